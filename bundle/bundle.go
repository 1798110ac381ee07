// Package bundle holds the ccmr-evidence bundle (docs/bundle.md): what a guest
// sends and a verifier judges. It comes in two forms, told apart by content:
// ccmr-evidence/v2, a strict zip archive of a JSON manifest and the logs as
// members, written (WriteArchive) and read (Open, ReadAt, Read) without
// holding the logs in memory; and ccmr-evidence/v1, one JSON document with
// the logs in base64 (Write, Read). It depends only on the core types in mr,
// so a guest that produces evidence does not link the verifier.
package bundle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// Format is the "format" member of a v1 bundle, and of a bundle built in
// memory (New); a v2 manifest says FormatV2.
const Format = "ccmr-evidence/v1"

// Bundle is an evidence bundle (docs/bundle.md): the hardware evidence, the
// logs a verifier replays, and the register values the guest claimed. Its
// JSON form is the v1 document and the v2 manifest; binary members are
// base64 in it. A bundle read from an archive or gathered from files reads
// its logs from there: Close it when done.
type Bundle struct {
	Format   string      `json:"format"`
	Platform mr.Platform `json:"platform"`
	Nonce    []byte      `json:"nonce"`
	Time     time.Time   `json:"time"`
	Evidence Evidence    `json:"evidence"`
	// Collateral is verification material carried along so that verifying
	// needs no network (TDX PCS collateral, AMD certificates).
	Collateral *Collateral `json:"collateral,omitempty"`
	Logs       []Log       `json:"logs,omitempty"`
	// Registers are the values the guest read when it quoted; the verifier
	// trusts only what layer 0 proves and reports claims that differ.
	Registers []Register `json:"registers,omitempty"`

	// closers release the files the logs are read from (Close).
	closers []io.Closer
}

// Evidence is the hardware evidence.
type Evidence struct {
	// Report: TDX quote, SNP attestation report, or the sim statement.
	Report []byte `json:"report,omitempty"`
	// Signature over Report where the format keeps them apart (sim).
	Signature []byte `json:"signature,omitempty"`
	// PublicKey is the PEM signing key: TPM AK or sim key.
	PublicKey string `json:"public_key,omitempty"`
	// TPMQuotes: one TPM2_Quote per PCR bank.
	TPMQuotes []TPMQuote `json:"tpm_quotes,omitempty"`
	// Certificates (DER): EK certificate, AK certificate, VCEK/VLEK.
	Certificates [][]byte `json:"certificates,omitempty"`
	// AzureHCLReport is the HCL report of an Azure confidential VM (vTPM NV
	// index 0x01400001): an SNP report or TD report whose report data binds
	// the HCL runtime data holding the vTPM's AK (HCLAkPub).
	AzureHCLReport []byte `json:"azure_hcl_report,omitempty"`
}

// TPMQuote is one quote: TPMS_ATTEST and TPMT_SIGNATURE as tpm2_quote writes
// them, and the quoted PCR values by index (hex).
type TPMQuote struct {
	Alg       string            `json:"alg"`
	Attest    []byte            `json:"attest"`
	Signature []byte            `json:"signature"`
	PCRs      map[string]string `json:"pcrs"`
	// PCRFile is the quoted PCR values in tpm2-tools' "serialized" form
	// (tpm2_quote -o -F serialized), for tpm2_checkquote -f. Informational:
	// the verifier uses PCRs.
	PCRFile []byte `json:"pcr_file,omitempty"`
}

// Collateral carries verification material.
type Collateral struct {
	// TDX is Intel PCS collateral in the QuoteCollateralV3 JSON layout.
	TDX json.RawMessage `json:"tdx,omitempty"`
	// Roots are PEM CA certificates the bundle's maker suggests; the
	// verifier uses its own roots unless told otherwise.
	Roots string `json:"roots,omitempty"`
}

// Log is one log in the bundle.
type Log struct {
	// Format is a --format name: tcg2, ccel, runtime, ima-binary, ...
	Format string `json:"format"`
	// Register is the backing register of a runtime log (rtmr3, pcr14).
	Register string `json:"register,omitempty"`
	// Alg is the backing register's algorithm for a runtime log.
	Alg string `json:"alg,omitempty"`
	// Source is where the guest read the log (for people).
	Source string `json:"source,omitempty"`
	// Data is the log itself. A log read from a streamed bundle leaves it
	// nil and keeps its bytes where they are; read a log through Size,
	// Open and Bytes, which serve both.
	Data []byte `json:"data,omitempty"`
	// Offset is the byte offset in the whole log at which this log's bytes
	// start: 0 for a whole log; more for a tail, which a verifier accepts
	// only with a monitor state that verified the log at least that far.
	Offset int64 `json:"offset,omitempty"`
	// Member is, in a v2 manifest, the archive member that holds the log
	// (logs/0, logs/1, ...); a v1 document has none.
	Member string `json:"member,omitempty"`

	// body, when set, holds the log in place of Data (a member of a
	// bundle archive); size is its length.
	body io.ReaderAt
	size int64
}

// Attach makes r (size bytes: a file, a member of a bundle archive) the
// log's bytes in place of Data, which is cleared; the log is then read
// from r on every Open, never held in memory whole.
func (l *Log) Attach(r io.ReaderAt, size int64) {
	l.Data, l.body, l.size = nil, r, size
}

// Size is the length of the log in bytes.
func (l *Log) Size() int64 {
	if l.body != nil {
		return l.size
	}
	return int64(len(l.Data))
}

// Open reads the log from byte off on; every call reads independently of
// the others, so a verifier may pass over a log several times without
// holding it in memory.
func (l *Log) Open(off int64) io.Reader {
	if off < 0 || off > l.Size() {
		off = l.Size()
	}
	if l.body != nil {
		return io.NewSectionReader(l.body, off, l.size-off)
	}
	return bytes.NewReader(l.Data[off:])
}

// Bytes is the whole log in memory, for the small logs (firmware event
// logs) whose parsers take a byte slice.
func (l *Log) Bytes() ([]byte, error) {
	if l.body == nil {
		return l.Data, nil
	}
	b := make([]byte, l.size)
	if _, err := io.ReadFull(io.NewSectionReader(l.body, 0, l.size), b); err != nil {
		return nil, fmt.Errorf("%w: reading the log: %v", mr.ErrMalformed, err)
	}
	return b, nil
}

// CopyRange writes bytes [from, to) of the log to w.
func (l *Log) CopyRange(w io.Writer, from, to int64) error {
	if from < 0 || to < from || to > l.Size() {
		return fmt.Errorf("%w: range %d-%d of a %d-byte log", mr.ErrMalformed, from, to, l.Size())
	}
	_, err := io.CopyN(w, l.Open(from), to-from)
	return err
}

// Register is one claimed register value.
type Register struct {
	Name   string    `json:"name"`
	Digest mr.Digest `json:"digest"`
}

// Read decodes a bundle, a v1 JSON document or a v2 archive by its
// content. A v2 archive is copied to a temporary file first (r may be
// standard input, which cannot be read at random) and its logs are read
// from there: Close the bundle when done with it. A bundle that does not
// decode is unusable input (mr.ErrMalformed), never a verdict.
func Read(r io.Reader, name string) (*Bundle, error) {
	return ReadContext(context.Background(), r, name)
}

// readV1 decodes a ccmr-evidence/v1 document.
func readV1(r io.Reader, name string) (*Bundle, error) {
	var b Bundle
	// One object of the documented members, each once, and nothing after
	// it (internal/strictjson): a member the verifier does not know, a
	// second object, or a member repeated (or repeated in another case,
	// which encoding/json folds) would be evidence one reader sees and
	// another does not.
	if err := strictjson.DecodeReader(r, 1<<31, &b); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, mr.ErrMalformed, err)
	}
	if b.Format != Format {
		return nil, fmt.Errorf("%s: %w: format %q, want %q", name, mr.ErrMalformed, b.Format, Format)
	}
	if err := b.checkMembers(); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, mr.ErrMalformed, err)
	}
	for i, l := range b.Logs {
		if l.Member != "" {
			// A v1 log is its data; a member name would point at
			// nothing, or at a log some other reader finds.
			return nil, fmt.Errorf("%s: %w: logs[%d] names member %q: a v1 bundle has none", name, mr.ErrMalformed, i, l.Member)
		}
	}
	return &b, nil
}

// checkMembers refuses evidence members the platform does not use: nothing
// would check them, yet whoever reads the bundle after ccmr vouched for it
// would see them beside a TRUSTED verdict.
func (b *Bundle) checkMembers() error {
	e := &b.Evidence
	var unused []string
	use := func(member string, present bool) {
		if present {
			unused = append(unused, member)
		}
	}
	switch b.Platform {
	case mr.PlatformSim:
		use("tpm_quotes", len(e.TPMQuotes) > 0)
		use("certificates", len(e.Certificates) > 0)
		use("azure_hcl_report", len(e.AzureHCLReport) > 0)
	case mr.PlatformTPM:
		// An Azure TDX CVM's TD quote rides in report beside its HCL report.
		use("report", len(e.Report) > 0 && len(e.AzureHCLReport) == 0)
		use("signature", len(e.Signature) > 0)
	case mr.PlatformTDX, mr.PlatformSNP:
		use("signature", len(e.Signature) > 0)
		use("public_key", e.PublicKey != "")
		use("tpm_quotes", len(e.TPMQuotes) > 0)
		use("azure_hcl_report", len(e.AzureHCLReport) > 0)
		if b.Platform == mr.PlatformTDX {
			use("certificates", len(e.Certificates) > 0)
		}
	default:
		return fmt.Errorf("platform %q", b.Platform)
	}
	if b.Platform != mr.PlatformTDX && b.Collateral != nil && len(b.Collateral.TDX) > 0 {
		unused = append(unused, "collateral.tdx")
	}
	if len(unused) > 0 {
		return fmt.Errorf("%s evidence does not use %s", b.Platform, strings.Join(unused, ", "))
	}
	return nil
}

// Write encodes the bundle as one ccmr-evidence/v1 JSON document, its logs
// base64 in it. The logs are streamed into the document from where they
// are (Log.Open), not held in memory; the document is otherwise what
// encoding/json makes of it.
func (b *Bundle) Write(w io.Writer) error {
	doc := *b
	doc.closers = nil
	if doc.Format == FormatV2 {
		doc.Format = Format
	}
	// Each non-empty log is encoded with a marker in place of its data
	// (Member sits where Data would, the next field, and Data is
	// omitted), and the marker is replaced by the streamed base64. The
	// marker cannot occur elsewhere in the document: in a JSON string,
	// its quotes would be escaped.
	var tag [8]byte
	rand.Read(tag[:])
	doc.Logs = make([]Log, len(b.Logs))
	markers := make([]string, len(b.Logs))
	for i := range b.Logs {
		l := b.Logs[i]
		l.Data, l.Member, l.body, l.size = nil, "", nil, 0
		if b.Logs[i].Size() > 0 {
			l.Member = fmt.Sprintf("ccmr-log-data-%x-%d", tag, i)
			markers[i] = `"member": "` + l.Member + `"`
		}
		doc.Logs[i] = l
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	rest := js.Bytes()
	for i, m := range markers {
		if m == "" {
			continue
		}
		j := bytes.Index(rest, []byte(m))
		if j < 0 {
			return fmt.Errorf("logs[%d]: encoding the bundle: marker not found", i)
		}
		bw.Write(rest[:j])
		bw.WriteString(`"data": "`)
		l := &b.Logs[i]
		b64 := base64.NewEncoder(base64.StdEncoding, bw)
		n, err := io.Copy(b64, io.LimitReader(l.Open(0), l.Size()))
		if err == nil && n != l.Size() {
			err = fmt.Errorf("%w: %d bytes of a %d-byte log", io.ErrUnexpectedEOF, n, l.Size())
		}
		if err != nil {
			return fmt.Errorf("logs[%d]: %w", i, err)
		}
		b64.Close()
		bw.WriteString(`"`)
		rest = rest[j+len(m):]
	}
	bw.Write(rest)
	return bw.Flush()
}

// New makes a bundle from a device's evidence and the logs the guest
// gathered. Virtual register values may be added to ev.Registers' claims
// through extra.
func New(ev *mr.Evidence, logs []Log, extra []mr.Value) *Bundle {
	b := &Bundle{
		Format:   Format,
		Platform: ev.Platform,
		Nonce:    ev.Nonce,
		Time:     ev.Time.UTC(),
		Evidence: Evidence{
			Report:       ev.Report,
			Signature:    ev.Signature,
			PublicKey:    string(ev.PublicKey),
			Certificates: ev.Certificates,
		},
	}
	for _, q := range ev.TPMQuotes {
		pcrs := map[string]string{}
		for i, v := range q.PCRs {
			pcrs[fmt.Sprint(i)] = fmt.Sprintf("%x", v)
		}
		b.Evidence.TPMQuotes = append(b.Evidence.TPMQuotes, TPMQuote{Alg: q.Alg.String(), Attest: q.Attest, Signature: q.Signature, PCRs: pcrs})
	}
	if len(ev.FirmwareLog) > 0 {
		b.Logs = append(b.Logs, Log{Format: ev.FirmwareLogFormat, Source: "firmware", Data: ev.FirmwareLog})
	}
	b.Logs = append(b.Logs, logs...)
	for _, v := range append(append([]mr.Value(nil), ev.Registers...), extra...) {
		b.Registers = append(b.Registers, Register{Name: v.Register.Name, Digest: v.Digest})
	}
	sort.SliceStable(b.Registers, func(i, j int) bool { return b.Registers[i].Name < b.Registers[j].Name })
	return b
}

// MREvidence turns the bundle's evidence back into mr.Evidence, the form
// the hardware-evidence checks take.
func (b *Bundle) MREvidence() (*mr.Evidence, error) {
	ev := &mr.Evidence{
		Platform:     b.Platform,
		Nonce:        b.Nonce,
		Time:         b.Time,
		Report:       b.Evidence.Report,
		Signature:    b.Evidence.Signature,
		PublicKey:    []byte(b.Evidence.PublicKey),
		Certificates: b.Evidence.Certificates,
	}
	for i, q := range b.Evidence.TPMQuotes {
		a, err := mr.ParseAlg(q.Alg)
		if err != nil {
			return nil, fmt.Errorf("tpm_quotes[%d]: %w", i, err)
		}
		tq := mr.TPMQuote{Alg: a, Attest: q.Attest, Signature: q.Signature, PCRs: map[int][]byte{}}
		for k, h := range q.PCRs {
			// Only canonical decimal keys: "05", "+5" or "5abc" next to "5"
			// would name one PCR twice, and Go's map order would pick the
			// value checked.
			idx, err := strconv.Atoi(k)
			if err != nil || idx < 0 || idx > 23 || strconv.Itoa(idx) != k {
				return nil, fmt.Errorf("tpm_quotes[%d]: %w: PCR index %q (want 0 to 23 in decimal)", i, mr.ErrMalformed, k)
			}
			d, err := mr.ParseHex(a, h)
			if err != nil {
				return nil, fmt.Errorf("tpm_quotes[%d] pcr %s: %w", i, k, err)
			}
			tq.PCRs[idx] = d.Bytes
		}
		ev.TPMQuotes = append(ev.TPMQuotes, tq)
	}
	return ev, nil
}
