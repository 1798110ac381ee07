package verifier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// perBankList writes a SHA-1 list as the kernel's per-bank list of bank
// (Linux 6.10+): each entry with bank(template data) as its template hash.
func perBankList(t *testing.T, sha1List []byte, bank mr.Alg) []byte {
	t.Helper()
	le := binary.LittleEndian
	rd := ima.NewBinaryReader(bytes.NewReader(sha1List), ima.Options{})
	var out []byte
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = le.AppendUint32(out, uint32(e.PCR))
		out = append(out, bank.Sum(e.TemplateData).Bytes...)
		out = le.AppendUint32(out, uint32(len(e.TemplateName)))
		out = append(out, e.TemplateName...)
		out = le.AppendUint32(out, uint32(len(e.TemplateData)))
		out = append(out, e.TemplateData...)
	}
}

// A bundle carries the per-bank lists of a 6.10+ kernel: each alone is
// judged against the quoted PCRs; together, the one of a quoted bank is
// judged and every other is replayed against its own bank's PCR 10. A
// per-bank list whose entries differ, one labelled with another bank, and
// two lists of one bank are refused.
func TestPerBankIMALists(t *testing.T) {
	honest := specsList(imatest.NG(0), imatest.NG(1), imatest.NG(2))
	forged := specsList(imatest.NG(0), imatest.NG(5), imatest.NG(2))
	b, o := simTPM(t, honest)
	l256, l384 := perBankList(t, honest, mr.SHA256), perBankList(t, honest, mr.SHA384)
	with := func(logs ...bundle.Log) *bundle.Bundle {
		c := *b
		c.Logs = logs
		return &c
	}
	for _, lg := range []bundle.Log{{Format: "ima-binary-sha256", Data: l256}, {Format: "ima-binary-sha384", Data: l384}} {
		mustTrust(t, with(lg), o)
	}
	text := mustTrust(t, with(bundle.Log{Format: "ima-binary", Data: honest}, bundle.Log{Format: "ima-binary-sha256", Data: l256},
		bundle.Log{Format: "ima-binary-sha384", Data: l384}), o)
	if !strings.Contains(text, "ima list (ima-binary-sha384): 3 IMA entries replay to the quoted sha384 PCRs") {
		t.Fatalf("the sha384 list is not replayed against its bank:\n%s", text)
	}
	// A second list with other entries: refused, whichever list is judged.
	mustNotTrust(t, with(bundle.Log{Format: "ima-binary", Data: honest}, bundle.Log{Format: "ima-binary-sha384", Data: perBankList(t, forged, mr.SHA384)}), o, "sha384")
	mustNotTrust(t, with(bundle.Log{Format: "ima-binary-sha384", Data: perBankList(t, forged, mr.SHA384)}, bundle.Log{Format: "ima-binary", Data: honest}), o, "")
	// The sha256 list labelled sm3 (same size) or sha384: refused.
	mustNotTrust(t, with(bundle.Log{Format: "ima-binary-sm3", Data: l256}), o, "")
	mustNotTrust(t, with(bundle.Log{Format: "ima-binary-sha384", Data: l256}), o, "")
	mustNotTrust(t, with(bundle.Log{Format: "ima-binary-sha256", Data: l256}, bundle.Log{Format: "ima-binary-sha256", Data: l256}), o, "two IMA lists of the sha256 bank")
}
