package snpserdetest

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// Every case is written in every form, to NAME.FORM.json, each a
// SnpEvidence whose MEASUREMENT and CHIP_ID are the report's bytes at
// 0x90 and 0x1a0 and whose one cert_chain entry is the key; and a PEM key
// file gives the DER a DER key file gives. (That the forms are the crate's
// is tested in bundle/importer against Trustee's own files.)
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	for _, c := range Cases {
		raw, der := c.Load(t)
		files := c.Write(t, dir)
		if len(files) != len(Forms) {
			t.Fatalf("%s: %d files, want %d", c.Name, len(files), len(Forms))
		}
		for _, form := range Forms {
			if want := filepath.Join(dir, c.Name+"."+form+".json"); files[form] != want {
				t.Fatalf("%s %s: written to %s, want %s", c.Name, form, files[form], want)
			}
			b, err := os.ReadFile(files[form])
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Report struct {
					Measurement []int `json:"measurement"`
					ChipID      []int `json:"chip_id"`
				} `json:"attestation_report"`
				Chain []struct {
					Type string `json:"cert_type"`
					Data []int  `json:"data"`
				} `json:"cert_chain"`
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%s: %v", files[form], err)
			}
			if !bytes.Equal(toBytes(m.Report.Measurement), raw[0x90:0xc0]) || !bytes.Equal(toBytes(m.Report.ChipID), raw[0x1a0:0x1e0]) {
				t.Errorf("%s: measurement or chip_id not the report's", files[form])
			}
			if len(m.Chain) != 1 || m.Chain[0].Type != c.Type || !bytes.Equal(toBytes(m.Chain[0].Data), der) {
				t.Errorf("%s: cert_chain is not the one %s key", files[form], c.Type)
			}
		}
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		rf := make([]byte, c.HCLOffset+len(raw))
		copy(rf[c.HCLOffset:], raw)
		if r2, d2 := c.Parse(t, rf, append([]byte("junk\n"), pemKey...)); !bytes.Equal(d2, der) || !bytes.Equal(r2, raw) {
			t.Errorf("%s: PEM key or report file read otherwise than the corpus's", c.Name)
		}
	}
}

// toBytes reads serde's array of numbers, or nil when one is not a byte
// (so that the comparison fails).
func toBytes(n []int) []byte {
	b := make([]byte, len(n))
	for i, x := range n {
		if x < 0 || x > 255 {
			return nil
		}
		b[i] = byte(x)
	}
	return b
}
