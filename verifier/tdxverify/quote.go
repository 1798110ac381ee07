package tdxverify

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"fmt"

	"github.com/ccmr-dev/ccmr/internal/bytereader"
	"github.com/ccmr-dev/ccmr/mr"
)

// Sizes and constants of the Intel TDX DCAP quote formats (Intel TDX DCAP
// Quoting Library API, appendix A: quote v4 and v5).
const (
	HeaderSize       = 48
	TDReport10Size   = 584 // TD quote body of TDX 1.0 (quote v4, or v5 body type 2)
	TDReport15Size   = 648 // TD report 1.5: + tee_tcb_svn2 (16) + mr_servicetd (48)
	QEReportSize     = 384 // SGX enclave report of the quoting enclave
	SignatureSize    = 64  // ECDSA P-256 r||s
	AttestKeySize    = 64  // P-256 point x||y
	TeeTypeTDX       = 0x81
	AttKeyECDSAP256  = 2
	BodyTypeTD10     = 2
	BodyTypeTD15     = 3
	CertTypeQEReport = 6 // QE report certification data
	CertTypePCKChain = 5 // concatenated PEM PCK certificate chain
)

// TDReport is the TD quote body: the TD report fields the quote signs.
// TeeTCBSVN2 and MRServiceTD are only set for a TD report 1.5 (quote v5,
// body type 3).
type TDReport struct {
	TeeTCBSVN      [16]byte
	MRSeam         [48]byte
	MRSignerSeam   [48]byte
	SeamAttributes [8]byte
	TDAttributes   [8]byte
	XFAM           [8]byte
	MRTD           [48]byte
	MRConfigID     [48]byte
	MROwner        [48]byte
	MROwnerConfig  [48]byte
	RTMR           [4][48]byte
	ReportData     [64]byte
	// TD15 is true for a TD report 1.5 body.
	TD15        bool
	TeeTCBSVN2  [16]byte
	MRServiceTD [48]byte
}

// Quote is a parsed TDX quote, v4 or v5. Byte slices point into the raw
// quote given to ParseQuote.
type Quote struct {
	Version    uint16
	AttKeyType uint16
	TeeType    uint32
	QEVendorID [16]byte
	UserData   [20]byte
	// BodyType is 2 (TD report 1.0) or 3 (TD report 1.5); a v4 quote has 2.
	BodyType uint16
	Body     TDReport
	// Signed is the part of the quote the attestation key signs: header,
	// (v5) body descriptor, body.
	Signed []byte
	// Signature is the ECDSA P-256 signature (r||s) over Signed.
	Signature []byte
	// AttestKey is the attestation public key (x||y).
	AttestKey []byte
	// QEReport is the quoting enclave's report, QEReportSig its signature
	// by the PCK key, QEAuthData the data hashed into its report data.
	QEReport    []byte
	QEReportSig []byte
	QEAuthData  []byte
	// PCKChain is the PEM certificate chain (PCK leaf, PCK CA, root).
	PCKChain []byte
	// End is the offset just past the signature data; bytes after it
	// belong to no structure.
	End int
}

// malformed is the error for a quote that does not parse: it names the
// field and the byte offset, and wraps mr.ErrMalformed.
func malformed(off int, format string, a ...any) error {
	return fmt.Errorf("tdx quote: %w: offset %d: %s", mr.ErrMalformed, off, fmt.Sprintf(format, a...))
}

// reader walks a byte slice (internal/bytereader, little-endian): a short
// field is an error naming the field and its byte offset, returned at once.
type reader struct{ *bytereader.Reader }

func newReader(b []byte, off int) *reader {
	r := &reader{bytereader.New(b, "tdx quote", binary.LittleEndian)}
	r.Seek(off)
	return r
}

func (r *reader) take(n int, what string) ([]byte, error) {
	v := r.Take(n, what)
	return v, r.Err()
}

func (r *reader) u16(what string) (uint16, error) {
	v := r.U16(what)
	return v, r.Err()
}

func (r *reader) u32(what string) (uint32, error) {
	v := r.U32(what)
	return v, r.Err()
}

// ParseQuote parses a TDX quote v4 or v5 with ECDSA P-256 attestation and
// QE-report certification data holding a PCK certificate chain (the only
// form TDX quoting enclaves produce). It checks structure only, no
// signature. Bytes after the signature data are left for the caller to
// judge (Quote.End). Errors wrap mr.ErrMalformed (or mr.ErrUnsupported for
// well-formed quotes of another kind) and name the byte offset.
func ParseQuote(raw []byte) (*Quote, error) {
	r := newReader(raw, 0)
	q := &Quote{}
	var err error
	if q.Version, err = r.u16("header version"); err != nil {
		return nil, err
	}
	if q.Version != 4 && q.Version != 5 {
		return nil, fmt.Errorf("tdx quote: %w: offset 0: version %d (want 4 or 5)", mr.ErrUnsupported, q.Version)
	}
	if q.AttKeyType, err = r.u16("attestation key type"); err != nil {
		return nil, err
	}
	if q.AttKeyType != AttKeyECDSAP256 {
		return nil, fmt.Errorf("tdx quote: %w: offset 2: attestation key type %d (want 2, ECDSA P-256)", mr.ErrUnsupported, q.AttKeyType)
	}
	if q.TeeType, err = r.u32("tee type"); err != nil {
		return nil, err
	}
	if q.TeeType != TeeTypeTDX {
		return nil, fmt.Errorf("tdx quote: %w: offset 4: tee type %#x (want 0x81, TDX)", mr.ErrUnsupported, q.TeeType)
	}
	if _, err := r.take(4, "header reserved"); err != nil {
		return nil, err
	}
	s, err := r.take(16, "QE vendor ID")
	if err != nil {
		return nil, err
	}
	copy(q.QEVendorID[:], s)
	if s, err = r.take(20, "user data"); err != nil {
		return nil, err
	}
	copy(q.UserData[:], s)

	bodySize := TDReport10Size
	q.BodyType = BodyTypeTD10
	if q.Version == 5 {
		off := r.Off()
		if q.BodyType, err = r.u16("body type"); err != nil {
			return nil, err
		}
		size, err := r.u32("body size")
		if err != nil {
			return nil, err
		}
		switch {
		case q.BodyType == BodyTypeTD10 && size == TDReport10Size:
		case q.BodyType == BodyTypeTD15 && size == TDReport15Size:
			bodySize = TDReport15Size
		case q.BodyType == BodyTypeTD10 || q.BodyType == BodyTypeTD15:
			return nil, malformed(off+2, "body type %d with size %d", q.BodyType, size)
		default:
			return nil, fmt.Errorf("tdx quote: %w: offset %d: body type %d (want 2 or 3, a TD report)", mr.ErrUnsupported, off, q.BodyType)
		}
	}
	body, err := r.take(bodySize, "TD quote body")
	if err != nil {
		return nil, err
	}
	parseBody(body, &q.Body)
	q.Signed = raw[:r.Off():r.Off()]

	sigLenOff := r.Off()
	sigLen, err := r.u32("signature data length")
	if err != nil {
		return nil, err
	}
	if _, err := r.take(int(min(sigLen, 1<<30)), "signature data"); err != nil {
		return nil, err
	}
	q.End = r.Off()
	if err := parseSigData(q, newReader(raw[:q.End], sigLenOff+4)); err != nil {
		return nil, err
	}
	return q, nil
}

func parseBody(b []byte, t *TDReport) {
	o := 0
	next := func(dst []byte) { o += copy(dst, b[o:]) }
	next(t.TeeTCBSVN[:])
	next(t.MRSeam[:])
	next(t.MRSignerSeam[:])
	next(t.SeamAttributes[:])
	next(t.TDAttributes[:])
	next(t.XFAM[:])
	next(t.MRTD[:])
	next(t.MRConfigID[:])
	next(t.MROwner[:])
	next(t.MROwnerConfig[:])
	for i := range t.RTMR {
		next(t.RTMR[i][:])
	}
	next(t.ReportData[:])
	if len(b) == TDReport15Size {
		t.TD15 = true
		next(t.TeeTCBSVN2[:])
		next(t.MRServiceTD[:])
	}
}

// parseSigData parses the ECDSA signature data (the same in v4 and v5):
// signature, attestation key, certification data of type 6 holding the QE
// report, its signature, the QE auth data and certification data of type
// 5 (the PCK chain). The nested sizes must fill the signature data exactly.
func parseSigData(q *Quote, r *reader) error {
	var err error
	if q.Signature, err = r.take(SignatureSize, "quote signature"); err != nil {
		return err
	}
	if q.AttestKey, err = r.take(AttestKeySize, "attestation key"); err != nil {
		return err
	}
	off := r.Off()
	ct, err := r.u16("certification data type")
	if err != nil {
		return err
	}
	if ct != CertTypeQEReport {
		return fmt.Errorf("tdx quote: %w: offset %d: certification data type %d (want 6, QE report certification data)", mr.ErrUnsupported, off, ct)
	}
	size, err := r.u32("certification data size")
	if err != nil {
		return err
	}
	if int64(size) != int64(r.Left()) {
		return malformed(r.Off()-4, "certification data size %d, signature data leaves %d", size, r.Left())
	}
	if q.QEReport, err = r.take(QEReportSize, "QE report"); err != nil {
		return err
	}
	if q.QEReportSig, err = r.take(SignatureSize, "QE report signature"); err != nil {
		return err
	}
	al, err := r.u16("QE auth data size")
	if err != nil {
		return err
	}
	if q.QEAuthData, err = r.take(int(al), "QE auth data"); err != nil {
		return err
	}
	off = r.Off()
	if ct, err = r.u16("PCK certification data type"); err != nil {
		return err
	}
	if ct != CertTypePCKChain {
		return fmt.Errorf("tdx quote: %w: offset %d: PCK certification data type %d (want 5, PCK certificate chain)", mr.ErrUnsupported, off, ct)
	}
	if size, err = r.u32("PCK certification data size"); err != nil {
		return err
	}
	if int64(size) != int64(r.Left()) {
		return malformed(r.Off()-4, "PCK certification data size %d, signature data leaves %d", size, r.Left())
	}
	chainOff := r.Off()
	if q.PCKChain, err = r.take(int(size), "PCK certificate chain"); err != nil {
		return err
	}
	if _, err := splitPEM(q.PCKChain, chainOff); err != nil {
		return err
	}
	return nil
}

// splitPEM returns the DER certificates of a concatenated PEM chain and
// insists that the text is canonical: nothing but CERTIFICATE blocks as
// encoding/pem writes them (64-column base64), newlines between them, and
// at most one trailing NUL. pem.Decode alone skips text before a block and
// accepts non-canonical base64, so bytes of the chain could change without
// changing the certificates; this way every byte matters. base is the
// chain's offset in the quote, for errors.
func splitPEM(chain []byte, base int) ([][]byte, error) {
	rest := chain
	if n := len(rest); n > 0 && rest[n-1] == 0 {
		rest = rest[:n-1]
	}
	var ders [][]byte
	for {
		trimmed := bytes.TrimLeft(rest, "\n")
		if len(trimmed) == 0 {
			break
		}
		off := base + len(chain) - len(rest) + (len(rest) - len(trimmed))
		blk, after := pem.Decode(trimmed)
		if blk == nil {
			return nil, malformed(off, "PCK certificate chain: no PEM block")
		}
		if blk.Type != "CERTIFICATE" || len(blk.Headers) != 0 {
			return nil, malformed(off, "PCK certificate chain: PEM block %q", blk.Type)
		}
		consumed := trimmed[:len(trimmed)-len(after)]
		canon := pem.EncodeToMemory(blk)
		if !bytes.Equal(bytes.TrimRight(consumed, "\n"), bytes.TrimRight(canon, "\n")) {
			return nil, malformed(off, "PCK certificate chain: PEM block is not in canonical form")
		}
		ders = append(ders, blk.Bytes)
		rest = after
	}
	if len(ders) == 0 {
		return nil, malformed(base, "PCK certificate chain: empty")
	}
	return ders, nil
}
