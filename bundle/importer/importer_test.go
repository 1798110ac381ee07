package importer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// The tpm2-tools vectors of backend/tpm (made with tpm2_quote on swtpm, see
// its testdata/README.md) build a bundle whose quote verifies with the AK.
func vec(t testing.TB, name string) File {
	t.Helper()
	p := filepath.Join("..", "..", "verifier", "tpmverify", "testdata", "tpm2-tools", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return File{Name: p, Data: b}
}

func TestBuildTPMVectors(t *testing.T) {
	for _, k := range []string{"ecc-sha256", "rsa-sha1"} {
		ak := vec(t, strings.Split(k, "-")[0]+"-ak.pem")
		pcrs := vec(t, k+".pcrs")
		b, err := Build(Parts{AK: &ak, TPMQuotes: []TPMQuote{{Attest: vec(t, k+".attest"), Signature: vec(t, k+".sig"), PCRs: &pcrs}}})
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if b.Platform != mr.PlatformTPM || string(b.Nonce) != "\x00\x11\x22\x33\x44\x55\x66\x77" || len(b.Evidence.TPMQuotes) != 1 {
			t.Fatalf("%s: %+v", k, b)
		}
		q := b.Evidence.TPMQuotes[0]
		a, _ := mr.ParseAlg(q.Alg)
		mq := mr.TPMQuote{Alg: a, Attest: q.Attest, Signature: q.Signature, PCRs: map[int][]byte{}}
		vals, err := tpmverify.ParsePCRFile(pcrs.Data)
		if err != nil {
			t.Fatal(err)
		}
		mq.PCRs = vals[a]
		if err := tpmverify.VerifyQuotePEM([]byte(b.Evidence.PublicKey), mq, b.Nonce); err != nil {
			t.Fatalf("%s: the imported quote does not verify: %v", k, err)
		}
	}
	// A two-bank quote is refused, naming the quote.
	ak := vec(t, "rsa-ak.pem")
	pcrs := vec(t, "rsa-twobank.pcrs")
	_, err := Build(Parts{AK: &ak, TPMQuotes: []TPMQuote{{Attest: vec(t, "rsa-twobank.attest"), Signature: vec(t, "rsa-twobank.sig"), PCRs: &pcrs}}})
	var pe *PartError
	if !errors.As(err, &pe) || pe.Part != PartTPMQuote || !errors.Is(err, mr.ErrUnsupported) {
		t.Fatalf("two-bank quote: %v", err)
	}
}

func TestUnwrapAttest(t *testing.T) {
	a := vec(t, "rsa-sha1.attest").Data
	w := append([]byte{byte(len(a) >> 8), byte(len(a))}, a...)
	if string(UnwrapAttest(w)) != string(a) || string(UnwrapAttest(a)) != string(a) {
		t.Fatal("unwrap")
	}
}

func TestParseLogSpecErrors(t *testing.T) {
	if _, err := buildLog(&Log{Format: "nonsense", File: File{Name: "x"}}); err == nil || !strings.Contains(err.Error(), "--log x") {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := buildLog(&Log{Format: "tcg2", Register: "pcr10", File: File{Name: "x"}}); err == nil {
		t.Fatal("register on a tcg2 log accepted")
	}
	l, err := buildLog(&Log{Format: "runtime", Register: "rtmr3", File: File{Name: "x"}})
	if err != nil || l.Register != "rtmr3" || l.Format != "runtime" {
		t.Fatalf("runtime log: %+v %v", l, err)
	}
}

// TestBuildLogChecksEveryFormat: every log goes through its format's codec
// at import. A log that does not parse is refused, naming the file; a record
// that does not match its content enters the bundle for verify to judge.
func TestBuildLogChecksEveryFormat(t *testing.T) {
	good, _, err := aael.AppendEntry(nil, 4, mr.SHA384, aael.Record{Domain: "coco.com", Operation: "op", Content: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildLog(&Log{Format: "runtime", Register: "rtmr3", File: File{Name: "rt", Data: good}}); err != nil {
		t.Fatalf("a good runtime log: %v", err)
	}
	tampered := bytes.Clone(good)
	tampered[len(tampered)-1] = 'y' // content x becomes y: the record no longer hashes to its digest
	if _, err := buildLog(&Log{Format: "runtime", Register: "rtmr3", File: File{Name: "rt", Data: tampered}}); err != nil {
		t.Fatalf("a runtime log with a tampered record is verify's to judge: %v", err)
	}
	for _, c := range []struct{ format, reg, data string }{
		{"runtime", "rtmr3", string(good[:len(good)-3])},
		{"aael-text", "rtmr3", "INIT sha384/zz\n"},
		{"ima-ascii", "", "10 zz ima-ng\n"},
		{"ima-binary", "", "\x0a\x00\x00\x00garbage"},
		{"dstack-json", "", `[{"imr":0,"event_type":1,"digest":"00"`},
		{"cel-tlv", "", "\x00\x00\x00\x00\x08\x00"},
	} {
		_, err := buildLog(&Log{Format: c.format, Register: c.reg, File: File{Name: "hostile", Data: []byte(c.data)}})
		var pe *PartError
		if !errors.As(err, &pe) || pe.Part != PartLog || !strings.Contains(err.Error(), "hostile") || !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%s log that does not parse: %v, want a malformed --log error naming the file", c.format, err)
		}
	}
}
