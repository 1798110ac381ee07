package ima

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/log"
	"github.com/ccmr-dev/ccmr/mr"
)

func expectPCR10(t testing.TB) []mr.Value {
	var out []mr.Value
	for _, a := range []mr.Alg{mr.SHA1, mr.SHA256} {
		out = append(out, mr.Value{Register: pcrRegister(10, a), Digest: pcrsTxt(t, a)[10]})
	}
	return out
}

func TestRealKernelReplay(t *testing.T) {
	for _, f := range []struct {
		name   string
		format log.Format
	}{{"binary_runtime_measurements", log.FormatIMABinary}, {"ascii_runtime_measurements", log.FormatIMAASCII}, {"binary_runtime_measurements", log.FormatAuto}} {
		t.Run(f.name+"/"+string(f.format), func(t *testing.T) {
			r := openList(t, filepath.Join(realDir(t), f.name), f.format)
			res, err := Replay(context.Background(), r, ReplayOptions{Expect: expectPCR10(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d entries, %v", res.Events, res.Registers)
		})
	}
}

func TestRealKernelASCIIBinaryAgree(t *testing.T) {
	b, err := readAll(t, openList(t, filepath.Join(realDir(t), "binary_runtime_measurements"), log.FormatIMABinary))
	if err != nil {
		t.Fatal(err)
	}
	a, err := readAll(t, openList(t, filepath.Join(realDir(t), "ascii_runtime_measurements"), log.FormatIMAASCII))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binary %d entries, ascii %d", len(b), len(a))
	n := min(len(a), len(b))
	if n == 0 {
		t.Fatal("no entries")
	}
	for i := range n {
		x, y := a[i], b[i]
		if x.PCR != y.PCR || !bytes.Equal(x.TemplateHash, y.TemplateHash) || x.TemplateName != y.TemplateName ||
			!bytes.Equal(x.TemplateData, y.TemplateData) || x.FileName() != y.FileName() {
			t.Fatalf("entry %d differs:\nascii  %+v\nbinary %+v", i, x, y)
		}
	}
}
