package verifier

// Helpers shared by the attack tests (attack_*_test.go) and the real-kernel
// test: the e2e TPM bundle, finding a log, requiring a refusal, and
// building TPM quotes and firmware events.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// readE2EBundle reads the real kernel's bundle of `make e2e`
// (testdata/e2e/guest/bundle.json), unchanged.
func readE2EBundle(t *testing.T) *bundle.Bundle {
	t.Helper()
	f, err := os.Open("../testdata/e2e/guest/bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := bundle.Read(f, "bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// e2eAKAndNonce returns the AK (PEM) and the nonce of the e2e bundle.
func e2eAKAndNonce(t *testing.T) (ak, nonce []byte) {
	t.Helper()
	ak, err := os.ReadFile("../testdata/e2e/guest/ak.pem")
	if err != nil {
		t.Fatal(err)
	}
	nonceHex, err := os.ReadFile("../testdata/e2e/host/nonce.txt")
	if err != nil {
		t.Fatal(err)
	}
	nonce, err = hex.DecodeString(strings.TrimSpace(string(nonceHex)))
	if err != nil {
		t.Fatal(err)
	}
	return ak, nonce
}

// e2eTrustedTPM is the real kernel's TPM bundle of `make e2e` (swtpm quotes
// of two banks, SeaBIOS's TCG2 log, the ccmr runtime log on pcr14 carrying
// mr_ima, the kernel's IMA list) with the options that make it TRUSTED, the
// nonce given (so no weakening is involved). It fails the test when the
// unchanged bundle is not plainly trusted.
func e2eTrustedTPM(t *testing.T) (*bundle.Bundle, Options) {
	t.Helper()
	b := readE2EBundle(t)
	ak, nonce := e2eAKAndNonce(t)
	o := Options{Name: "e2e", TrustedKeys: [][]byte{ak}, Nonce: nonce}
	if rep := verifyT(t, b, o); !rep.Trusted || len(rep.Weakened) > 0 {
		t.Fatalf("the unchanged e2e bundle is not plainly trusted:\n%s", reportText(rep))
	}
	return b, o
}

// e2eTPM is the real kernel's TPM bundle (testdata/e2e) without its runtime
// log and virtual register claims, so that its IMA list is replayed against
// the quoted PCRs; and the options that trust it.
func e2eTPM(t *testing.T) (*bundle.Bundle, Options) {
	t.Helper()
	b := readE2EBundle(t)
	dropLogs(b, "runtime")
	b.Registers = onlyReal(b.Registers)
	ak, nonce := e2eAKAndNonce(t)
	return b, Options{Name: "e2e", TrustedKeys: [][]byte{ak}, Nonce: nonce}
}

// logIndex is the index in b.Logs of the first log of the format; it fails
// the test when there is none.
func logIndex(t *testing.T, b *bundle.Bundle, format string) int {
	t.Helper()
	for i, l := range b.Logs {
		if l.Format == format {
			return i
		}
	}
	t.Fatalf("no %s log in the bundle", format)
	return -1
}

// mustRefuse writes b, reads it back and verifies it, and fails the test
// when the verdict is a TRUSTED (weakened or not): the attack must be
// refused. It returns the report (nil when the input was unusable, which
// is safe).
func mustRefuse(t *testing.T, b *bundle.Bundle, o Options, what string) *Report {
	t.Helper()
	var buf bytes.Buffer
	b.Write(&buf)
	b2, err := bundle.Read(&buf, "b")
	if err != nil {
		return nil // unusable input: safe
	}
	rep, err := Verify(context.Background(), b2, o)
	if err != nil {
		return nil // unusable input: safe
	}
	if rep.Trusted {
		t.Fatalf("%s: %s\n%s", what, rep.Verdict, reportText(rep))
	}
	return rep
}

// tpmQuoteOver signs, with a software ECDSA P-256 key standing in for a
// pinned TPM AK, a TPMS_ATTEST quoting the given sha256 PCR values with the
// nonce as qualifying data: what a TPM returns for `tpm2_quote -l
// sha256:<those PCRs>`. It returns the bundle quote and the AK as PEM.
func tpmQuoteOver(t *testing.T, nonce []byte, pcrs map[int][]byte) (bundle.TPMQuote, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	be16 := func(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
	be32 := func(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
	sized := func(b, v []byte) []byte { return append(be16(b, uint16(len(v))), v...) }
	var sel [3]byte
	h := sha256.New()
	for i := 0; i < 24; i++ {
		if v, ok := pcrs[i]; ok {
			sel[i/8] |= 1 << (i % 8)
			h.Write(v)
		}
	}
	a := be32(nil, 0xff544347)
	a = be16(a, 0x8018)
	a = sized(a, nil)   // qualifiedSigner
	a = sized(a, nonce) // extraData
	a = binary.BigEndian.AppendUint64(a, 1000)
	a = be32(a, 1)
	a = be32(a, 0)
	a = append(a, 1)
	a = binary.BigEndian.AppendUint64(a, 0x2000)
	a = be32(a, 1)
	a = be16(a, 0x000b) // sha256 bank
	a = append(a, 3)
	a = append(a, sel[:]...)
	a = sized(a, h.Sum(nil))
	dg := sha256.Sum256(a)
	r, s, err := ecdsa.Sign(rand.Reader, key, dg[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := be16(nil, 0x0018)
	sig = be16(sig, 0x000b)
	sig = sized(sig, r.FillBytes(make([]byte, 32)))
	sig = sized(sig, s.FillBytes(make([]byte, 32)))
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	q := bundle.TPMQuote{Alg: "sha256", Attest: a, Signature: sig, PCRs: map[string]string{}}
	for i, v := range pcrs {
		q.PCRs[fmt.Sprint(i)] = hex.EncodeToString(v)
	}
	return q, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// appendTCG2Event appends a crypto-agile TCG_PCR_EVENT2 with sha1 and sha256
// digests of data (the banks of SeaBIOS's log).
func appendTCG2Event(dst []byte, pcr, typ uint32, data []byte) []byte {
	le32 := func(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
	dst = le32(dst, pcr)
	dst = le32(dst, typ)
	dst = le32(dst, 2)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(mr.SHA1))
	dst = append(dst, mr.SHA1.Sum(data).Bytes...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(mr.SHA256))
	dst = append(dst, mr.SHA256.Sum(data).Bytes...)
	dst = le32(dst, uint32(len(data)))
	return append(dst, data...)
}

// initWithoutHistoryBase is the honest bundle of the item 1 attacks
// (TestAttack01_InitWithoutHistory, historyInCCEL): a guest with n IMA
// entries and one mr_ctr record, quoted; its IMA list; and options whose
// runtime policy allows the files of entries k..n-1 but not the (different)
// digest entry 1 had, so that it breaks a dropped entry only. It fails the
// test when the honest bundle passes that policy.
func initWithoutHistoryBase(t *testing.T, n, k int) (honest *bundle.Bundle, imaList [][]byte, o Options) {
	t.Helper()
	g := newGuest(t)
	g.imaUpTo(n)
	g.extend("mr_ctr.a", "1")
	honest = g.quote(false)
	imaList = imaEntries(t, logOf(honest, "ima-binary").Data)
	rp := imaPolicy(t, &bundle.Bundle{Logs: []bundle.Log{{Format: "ima-binary", Data: join(imaList[k:])}}})
	e1, err := ima.NewBinaryReader(bytes.NewReader(imaList[1]), ima.Options{}).Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, listed := rp.Digests[e1.FileName()]; listed {
		t.Fatalf("%s is measured again after entry %d: pick another entry", e1.FileName(), k)
	}
	o = g.opts()
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	if rep := verifyT(t, honest, o); rep.Trusted {
		t.Fatalf("the honest bundle passes the policy the attack needs to evade:\n%s", reportText(rep))
	}
	return honest, imaList, o
}

// imaFile is the path and hex file digest of an IMA entry.
type imaFile struct{ path, digest string }

// realIMAFiles returns the files of the real IMA list's first n entries
// (fewer when the list is shorter) and how many of them have each path.
func realIMAFiles(t *testing.T, n int) ([]imaFile, map[string]int) {
	t.Helper()
	data, err := os.ReadFile(realIMA)
	if err != nil {
		t.Fatal(err)
	}
	rd := ima.NewBinaryReader(bytes.NewReader(data), ima.Options{})
	var files []imaFile
	count := map[string]int{}
	for i := 0; i < n; i++ {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, d, _ := e.FileDigest()
		files = append(files, imaFile{e.FileName(), hex.EncodeToString(d)})
		count[e.FileName()]++
	}
	return files, count
}

// allowFilesExcept is a parsed policy whose Keylime runtime policy allows
// every file of files with its digest, except files[deny], whose digest it
// gives as another one (deny -1: none).
func allowFilesExcept(t *testing.T, files []imaFile, deny int) *Policy {
	t.Helper()
	digests := map[string][]string{}
	for i, f := range files {
		d := f.digest
		if i == deny {
			d = strings.Repeat("ab", len(d)/2)
		}
		digests[f.path] = append(digests[f.path], d)
	}
	kl, _ := json.Marshal(RuntimePolicy{Digests: digests}) // a complete Keylime policy
	p, err := ParsePolicy([]byte(`{"ima":{"keylime":`+string(kl)+`}}`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// onlyReal keeps the claims of real registers: a forger drops the virtual
// claims its edit changed (layer 2 would compare them).
func onlyReal(regs []bundle.Register) []bundle.Register {
	var out []bundle.Register
	for _, r := range regs {
		if !mr.IsVirtualName(r.Name) {
			out = append(out, r)
		}
	}
	return out
}

// dropVirtualAndIMA drops b's virtual register claims and its IMA logs
// (every format starting "ima"), keeping the order of the rest.
func dropVirtualAndIMA(b *bundle.Bundle) {
	b.Registers = onlyReal(b.Registers)
	keep := b.Logs[:0]
	for _, l := range b.Logs {
		if !strings.HasPrefix(l.Format, "ima") {
			keep = append(keep, l)
		}
	}
	b.Logs = keep
}

// replaySHA256PCRs replays the TCG2 firmware log fw and returns the sha256
// values it gives PCRs 0 to below-1, by PCR number.
func replaySHA256PCRs(t *testing.T, fw []byte, below int) map[int][]byte {
	t.Helper()
	l, err := tcg.Parse("fw", fw, "tcg2")
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for _, v := range res.Registers {
		var i int
		if _, err := fmt.Sscanf(v.Register.Name, "pcr%d", &i); err == nil && v.Digest.Alg == mr.SHA256 && i < below {
			pcrs[i] = v.Digest.Bytes
		}
	}
	return pcrs
}
