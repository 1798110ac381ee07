package tcg

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/internal/modcache"
	"github.com/ccmr-dev/ccmr/mr"
)

// FuzzParse feeds arbitrary bytes to Parse in both formats, then to Replay,
// Check and Show: nothing may panic, and errors must be *eventlog.Error with an
// offset inside the input.
func FuzzParse(f *testing.F) {
	var seeds []string
	for name := range goEventlogFiles {
		seeds = append(seeds, goEventlogFile(f, name))
	}
	seeds = append(seeds, filepath.Join(realKernelDir, "tpm_eventlog.bin"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Sniff(data)
		for _, format := range []eventlog.Format{eventlog.FormatTCG2, eventlog.FormatCCEL} {
			l, err := Parse("fuzz", data, format)
			if err != nil {
				var le *eventlog.Error
				if !errors.As(err, &le) || le.Offset < 0 || le.Offset > int64(len(data)) {
					t.Fatalf("%v: bad error %v", format, err)
				}
				continue
			}
			if l.End+l.Padding != int64(len(data)) {
				t.Fatalf("end %d + padding %d != %d", l.End, l.Padding, len(data))
			}
			if _, err := l.Replay(); err != nil {
				var le *eventlog.Error
				if !errors.As(err, &le) {
					t.Fatalf("replay: %v", err)
				}
			}
			for _, a := range l.Banks {
				if a.Valid() {
					name, _ := RegisterName(format, 0)
					_ = l.Check([]mr.Value{{Register: mr.Register{Name: name}, Digest: mr.Zero(a)}})
				}
			}
			for range l.Show() {
			}
			// The verifier's checks of event data and digests per bank
			// read the same records: they fail or pass, never panic.
			_, _ = l.CheckEventData()
			_, _, _, _ = l.MissingDigest()
		}
	})
}

// BenchmarkReplay parses and replays the largest real TPM log in testdata
// (GCE SEV-SNP, 3 banks, 116 records); with the corpus present, also the
// corpus' largest TCG2 eventlog.
func BenchmarkReplay(b *testing.B) {
	run := func(b *testing.B, path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			l, err := Parse(path, data, eventlog.FormatTCG2)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := l.Replay(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("ubuntu-2404-amd-sevsnp", func(b *testing.B) { run(b, goEventlogFile(b, "ubuntu-2404-amd-sevsnp.bin")) })
	b.Run("corpus-largest", func(b *testing.B) {
		run(b, corpus.Path(b, "ima-evm-utils/sample-binary_bios_measurements-pcrs-8-9"))
	})
}

// goEventlogFiles are go-eventlog's own test logs (testdata/README.md), read
// in place from the module cache: name → folder under testdata/eventlogs.
var goEventlogFiles = map[string]string{
	"arch-linux-workstation.bin":                    "tpm",
	"debian-10.bin":                                 "tpm",
	"glinux-alex.bin":                               "tpm",
	"ubuntu-2404-amd-sevsnp.bin":                    "tpm",
	"CCEL_unpadded.data.bin":                        "ccel",
	"cos-113-intel-tdx-dupe-separator-unpadded.bin": "ccel",
	"cos-113-intel-tdx.table.bin":                   "ccel",
}

func goEventlogFile(t testing.TB, name string) string {
	t.Helper()
	dir, ok := goEventlogFiles[name]
	if !ok {
		t.Fatalf("%s is not one of go-eventlog's test logs", name)
	}
	p, err := modcache.File("github.com/google/go-eventlog", "testdata/eventlogs/"+dir+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
