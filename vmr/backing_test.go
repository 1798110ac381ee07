package vmr

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

func openTPMSim(t *testing.T, dir string) *sim.Device {
	t.Helper()
	dev, err := sim.Open(context.Background(), filepath.Join(dir, "sim"), sim.WithLayout(sim.LayoutTPM))
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

// The first Open records its backing register in the folder; later Opens
// without a name use it, a different name is refused naming both, and the
// default on a TPM is pcr14.
func TestBackingRecorded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev := openTPMSim(t, dir)
	logDir := filepath.Join(dir, "log")
	if got, err := RecordedBacking(logDir); err != nil || got != "" {
		t.Fatalf("RecordedBacking of no folder = %q, %v", got, err)
	}
	s, err := Open(ctx, dev, Options{Dir: logDir})
	if err != nil {
		t.Fatal(err)
	}
	if s.Backing().Name != TPMDefaultBacking {
		t.Fatalf("default backing on a TPM = %s, want %s", s.Backing().Name, TPMDefaultBacking)
	}
	if _, err := s.Extend(ctx, "mr_a", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(filepath.Join(logDir, BackingFile))
	if err != nil || string(b) != "pcr14\n" {
		t.Fatalf("backing file %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(logDir, BackingFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backing file mode %v", fi.Mode())
	}
	// A later Open naming another register fails with both names and
	// writes nothing.
	_, err = Open(ctx, dev, Options{Dir: logDir, Backing: "pcr15"})
	if !errors.Is(err, ErrBackingMismatch) || !strings.Contains(err.Error(), "pcr15") || !strings.Contains(err.Error(), "pcr14") {
		t.Fatalf("Open with another backing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(logDir, "pcr15.log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Open created pcr15.log: %v", err)
	}
	// The same name, or none, opens the recorded one with its record.
	for _, name := range []string{"", "pcr14"} {
		s, err := Open(ctx, dev, Options{Dir: logDir, Backing: name})
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		if n, _ := s.Records(ctx, "mr_a"); n != 1 || s.Backing().Name != "pcr14" {
			t.Errorf("Open(%q): %s with %d records", name, s.Backing().Name, n)
		}
		s.Close()
	}
	// A folder recording pcr15 makes pcr15 the default.
	other := filepath.Join(dir, "log2")
	if s, err = Open(ctx, dev, Options{Dir: other, Backing: "pcr15"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, dev, Options{Dir: other}); err != nil || s.Backing().Name != "pcr15" {
		t.Fatalf("Open of a folder recording pcr15: %v", err)
	}
	s.Close()
}

// A folder from before the backing file records the register of its one
// log; with several logs and no backing file the register must be named.
func TestBackingFromLogName(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(logDir, "pcr15.log"), nil, 0o600)
	if got, err := RecordedBacking(logDir); err != nil || got != "pcr15" {
		t.Fatalf("RecordedBacking = %q, %v", got, err)
	}
	os.WriteFile(filepath.Join(logDir, "pcr14.log"), nil, 0o600)
	if _, err := RecordedBacking(logDir); !errors.Is(err, ErrUnrecorded) || !strings.Contains(err.Error(), "pcr14.log, pcr15.log") {
		t.Fatalf("two logs, no backing file: %v", err)
	}
	// Open needs a name there, and records nothing.
	dev := openTPMSim(t, dir)
	if _, err := Open(context.Background(), dev, Options{Dir: logDir}); !errors.Is(err, ErrUnrecorded) {
		t.Fatalf("Open without a name: %v", err)
	}
	s, err := Open(context.Background(), dev, Options{Dir: logDir, Backing: "pcr15"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(logDir, BackingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an ambiguous folder got a backing file: %v", err)
	}
}

// Hostile backing files: planted by another user, writable by others, a
// link, or not one register name. Each is refused and nothing is written.
func TestBackingHostile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev := openTPMSim(t, dir)
	cases := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  error
		msg   string
	}{
		{"other uid", func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file away")
			}
			os.WriteFile(path, []byte("pcr15\n"), 0o600)
			if err := os.Chown(path, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, safefs.ErrUnsafe, "belongs to uid 12345"},
		{"group-writable", func(t *testing.T, path string) {
			os.WriteFile(path, []byte("pcr15\n"), 0o600)
			os.Chmod(path, 0o620)
		}, safefs.ErrUnsafe, "mode 0620"},
		{"symlink", func(t *testing.T, path string) {
			target := filepath.Join(filepath.Dir(path), "elsewhere")
			os.WriteFile(target, []byte("pcr15\n"), 0o600)
			os.Symlink(target, path)
		}, safefs.ErrUnsafe, "symbolic link"},
		{"no newline", func(t *testing.T, path string) { os.WriteFile(path, []byte("pcr15"), 0o600) }, mr.ErrMalformed, "byte 5"},
		{"two lines", func(t *testing.T, path string) { os.WriteFile(path, []byte("pcr15\npcr14\n"), 0o600) }, mr.ErrMalformed, "byte 6"},
		{"path", func(t *testing.T, path string) { os.WriteFile(path, []byte("../etc/x\n"), 0o600) }, mr.ErrMalformed, "byte 0"},
		{"terminal", func(t *testing.T, path string) { os.WriteFile(path, []byte("pcr\x1b[2J\n"), 0o600) }, mr.ErrMalformed, "byte 3"},
		{"virtual", func(t *testing.T, path string) { os.WriteFile(path, []byte("mr_ima\n"), 0o600) }, mr.ErrMalformed, "byte 2"},
		{"huge", func(t *testing.T, path string) { os.WriteFile(path, bytes.Repeat([]byte("a"), 1<<20), 0o600) }, mr.ErrMalformed, "longer than 64"},
		{"empty", func(t *testing.T, path string) { os.WriteFile(path, nil, 0o600) }, mr.ErrMalformed, "byte 0"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logDir := filepath.Join(dir, "log"+string(rune('a'+i)))
			if err := os.Mkdir(logDir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(logDir, BackingFile)
			c.setup(t, path)
			_, err := RecordedBacking(logDir)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), path) {
				t.Fatalf("RecordedBacking: %v, want %v with %q", err, c.want, c.msg)
			}
			if _, err := Open(ctx, dev, Options{Dir: logDir, Backing: "pcr15"}); !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
			if m, _ := filepath.Glob(filepath.Join(logDir, "*.log")); len(m) != 0 {
				t.Errorf("a refused Open wrote %v", m)
			}
		})
	}
}

// A register the guest can reset backs virtual registers only when the
// caller acknowledges it, also when the folder already records it (a
// planted or old record must not turn the acknowledgment on).
func TestBackingResettable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev := openTPMSim(t, dir)
	for _, reg := range []string{"pcr16", "pcr23"} {
		logDir := filepath.Join(dir, reg)
		_, err := Open(ctx, dev, Options{Dir: logDir, Backing: reg})
		if !errors.Is(err, mr.ErrNotExtendable) || !strings.Contains(err.Error(), "reset") {
			t.Fatalf("%s without the acknowledgment: %v", reg, err)
		}
		if _, err := os.Stat(filepath.Join(logDir, BackingFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused %s recorded: %v", reg, err)
		}
		s, err := Open(ctx, dev, Options{Dir: logDir, Backing: reg, AllowResettable: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Extend(ctx, "mr_a", digestN("a", 1)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		// Recorded now; still refused without the acknowledgment.
		_, err = Open(ctx, dev, Options{Dir: logDir})
		if !errors.Is(err, mr.ErrNotExtendable) || !strings.Contains(err.Error(), "recorded in") {
			t.Fatalf("recorded %s without the acknowledgment: %v", reg, err)
		}
	}
}

// Two writers recording at once: one record wins, the loser with the same
// register accepts it, with another fails.
func TestRecordBackingRace(t *testing.T) {
	dir := t.TempDir()
	if err := recordBacking(dir, "pcr14"); err != nil {
		t.Fatal(err)
	}
	if err := recordBacking(dir, "pcr14"); err != nil {
		t.Fatalf("same register again: %v", err)
	}
	if err := recordBacking(dir, "pcr15"); !errors.Is(err, ErrBackingMismatch) {
		t.Fatalf("another register: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".backing*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// On PCRs 17-22 (reset value all ones) a fresh log starts without INIT:
// the store's replay starts from all ones, as the verifier's does.
func TestBackingDRTMResetValue(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev := openTPMSim(t, dir)
	_, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log"), Backing: "pcr17"})
	if !errors.Is(err, mr.ErrNotExtendable) || !strings.Contains(err.Error(), "locality") {
		t.Fatalf("pcr17 on a TPM: %v", err)
	}
	reg := mr.Register{Name: "pcr17", Alg: mr.SHA256, Index: 17}
	var v view
	v.reset(reg)
	if !bytes.Equal(v.value.Bytes, bytes.Repeat([]byte{0xFF}, 32)) {
		t.Fatalf("view of pcr17 starts at %v", v.value)
	}
	// An INIT-less log on pcr17 replays from all ones.
	rec, _ := newRecord("mr_a", digestN("a", 0))
	b, d, err := encodeRecord(nil, reg, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.replay(bytes.NewReader(b), "pcr17.log"); err != nil {
		t.Fatal(err)
	}
	want := mr.NewExtender(mr.TPMResetValue(17, mr.SHA256))
	want.Extend(d.Bytes)
	if !v.value.Equal(want.Value()) {
		t.Fatalf("replay of pcr17 = %v, want %v", v.value, want.Value())
	}
}

// FuzzParseBacking: a backing file parses only as one valid register name
// and a newline, and every refusal names the file and a byte offset within
// it.
func FuzzParseBacking(f *testing.F) {
	for _, s := range []string{"pcr14\n", "rtmr3\n", "pcr14", "pcr14\n\n", "", "\n", "../x\n", "mr_ima\n", "PCR1\n", "p\x00\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := parseBacking("F", b)
		if err != nil {
			if !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "F: ") {
				t.Fatalf("error %v", err)
			}
			if len(b) <= maxBackingFile && !strings.Contains(err.Error(), "byte ") {
				t.Fatalf("error without an offset: %v", err)
			}
			return
		}
		if !validBackingName(name) || string(b) != name+"\n" {
			t.Fatalf("accepted %q as %q", b, name)
		}
	})
}

// A stale log of another user in the folder (its backing file ours) is
// refused before anything is read from it or written to it.
func TestStaleLogOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	ctx := context.Background()
	dir := t.TempDir()
	dev := openTPMSim(t, dir)
	logDir := filepath.Join(dir, "log")
	os.Mkdir(logDir, 0o700)
	stale := filepath.Join(logDir, "pcr14.log")
	os.WriteFile(stale, nil, 0o600)
	if err := os.Chown(stale, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, dev, Options{Dir: logDir})
	if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), stale) || !strings.Contains(err.Error(), "uid 4242") {
		t.Fatalf("Open over another user's log: %v", err)
	}
	if v, _ := dev.Read(ctx, "pcr14"); !bytes.Equal(v[0].Digest.Bytes, make([]byte, len(v[0].Digest.Bytes))) {
		t.Fatalf("pcr14 changed: %v", v)
	}
}

// A folder of another user with a backing file in it is refused; one with
// nothing in it reads as no runtime log (reading real registers must not
// fail on it), and Open refuses it.
func TestBackingFolderOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder away")
	}
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	os.Mkdir(logDir, 0o700)
	if err := os.Chown(logDir, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if got, err := RecordedBacking(logDir); err != nil || got != "" {
		t.Fatalf("empty folder of another user: %q, %v", got, err)
	}
	if _, err := Open(context.Background(), openTPMSim(t, dir), Options{Dir: logDir}); !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("Open in another user's folder: %v", err)
	}
	os.WriteFile(filepath.Join(logDir, BackingFile), []byte("pcr14\n"), 0o600)
	if _, err := RecordedBacking(logDir); !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), "uid 4242") {
		t.Fatalf("backing file in another user's folder: %v", err)
	}
}
