// Package collect gathers a guest's evidence bundle in one call: the
// device's evidence for a nonce, taken under the runtime log's lock so the
// log ends exactly where the evidence's register value does, the runtime
// log with its archived segments, the IMA list cut to what the evidence
// covers, and the claimed register values. The logs are not read into
// memory: each stays in its file, attached to the bundle, until the bundle
// is written (bundle.WriteArchive streams them) and closed.
package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/tail"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
	"github.com/ccmr-dev/ccmr/vmr"
)

// MaxIMAList bounds the IMA list a bundle carries: a FIFO-like file that
// never ends must not fill the disk of the bundle's reader.
const MaxIMAList = 2 << 30

// Options say what goes into a bundle besides the evidence and the runtime
// log.
type Options struct {
	// IMAList is the binary IMA list to include when it can be read at all
	// (not by a user without access to securityfs); empty means the
	// kernel's, vmr.DefaultIMAList.
	IMAList string
	// NoIMA leaves the IMA list out.
	NoIMA bool
	// Logs are more logs to carry after the device's: other writers' logs
	// of shared registers (dstack-json, ccel, tcg2), which prove where a
	// runtime log starts.
	Logs []bundle.Log
	// SystemdLog is systemd's userspace measurement log (tpm2-measure.log)
	// to carry on a TPM; empty means the system's, cel.SystemdLogPath. It is
	// read under its shared lock, held while the TPM quotes, so the log
	// holds exactly the extends the quoted PCRs do. A log that does not
	// exist or cannot be read for want of permission is left out, as is one
	// systemd marked incomplete (then Warn says so: the PCRs it touches
	// stay unexplained).
	SystemdLog string
	// NoSystemdLog leaves systemd's log out.
	NoSystemdLog bool
	// Warn receives what a user should know about the bundle made (nil:
	// nothing is said).
	Warn func(string)
	// Since, when set, cuts the logs to what a verifier's monitor state
	// has not seen (tail.Logs): the runtime log and the IMA list from its
	// offsets on. The verifier refuses such tails without that state.
	Since *tail.Since
}

// Bundle takes dev's evidence for nonce and gathers the logs a verifier
// replays against it. store holds the virtual registers (nil when the guest
// has none): the evidence is taken under its lock. The bundle's logs read
// from open files; Close it when it is written.
func Bundle(ctx context.Context, dev mr.Device, store *vmr.Store, nonce []byte, opts Options) (_ *bundle.Bundle, err error) {
	att, ok := dev.(mr.Attester)
	if !ok {
		return nil, fmt.Errorf("device %s cannot attest: %w", dev.Kind(), mr.ErrUnsupported)
	}
	sd, err := systemdLog(ctx, dev, opts)
	if err != nil {
		return nil, err
	}
	if sd != nil {
		// Held until the evidence is taken: systemd's writers extend and
		// log under its exclusive lock.
		defer sd.Close()
	}
	var ev *mr.Evidence
	attest := func() error {
		var err error
		ev, err = att.Attest(ctx, nonce)
		return err
	}
	var files []io.Closer
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	var logs []bundle.Log
	var virt []mr.Value
	if store != nil {
		// The log is read where it is, not held: with a million IMA
		// records forwarded into mr_ima it is hundreds of megabytes.
		cur, size, err := store.SnapshotFile(ctx, attest)
		if err != nil {
			return nil, err
		}
		files = append(files, cur)
		bk := store.Backing()
		// Archived segments still present go first, oldest first, so a
		// verifier without a monitor state can prove the snapshots. They
		// are never written again, so they are read where they are.
		archives, err := store.Archives()
		if err != nil {
			return nil, err
		}
		for _, a := range archives {
			f, err := safefs.Open(a)
			if err != nil {
				return nil, err
			}
			files = append(files, f)
			fi, err := f.Stat()
			if err != nil {
				return nil, err
			}
			l := bundle.Log{Format: string(eventlog.FormatRuntime), Register: bk.Name, Alg: bk.Alg.String(), Source: a}
			l.Attach(f, fi.Size())
			logs = append(logs, l)
		}
		// A log with no entry and nothing before it (a store that has
		// not been written yet) says only that the register was never
		// extended through it: it is left out, as when there is no log
		// at all, because a log with no entry names no digest algorithm
		// or MR index to replay it with, and the verifier refuses it.
		if size > 0 || len(archives) > 0 {
			l := bundle.Log{Format: string(eventlog.FormatRuntime), Register: bk.Name, Alg: bk.Alg.String(), Source: store.Path()}
			l.Attach(cur, size)
			logs = append(logs, l)
		}
		if virt, err = store.List(ctx); err != nil {
			return nil, err
		}
	} else if err := attest(); err != nil {
		return nil, err
	}
	if !opts.NoIMA {
		list := opts.IMAList
		if list == "" {
			list = vmr.DefaultIMAList
		}
		l, f, err := imaLog(ctx, ev, list)
		if err != nil {
			return nil, err
		}
		if f != nil {
			files = append(files, f)
		}
		if l != nil {
			logs = append(logs, *l)
		}
	}
	if sd != nil {
		logs = append(logs, bundle.Log{Format: string(eventlog.FormatSystemd), Source: sd.Path, Data: sd.Data})
	}
	logs = append(logs, opts.Logs...)
	if logs, err = tail.Logs(logs, opts.Since); err != nil {
		return nil, fmt.Errorf("since: %w", err)
	}
	b := bundle.New(ev, logs, virt)
	for i, q := range ev.TPMQuotes {
		// Only for tpm2_checkquote -f; left out if it cannot be made.
		b.Evidence.TPMQuotes[i].PCRFile, _ = tpmverify.MarshalPCRFile(q)
	}
	for _, f := range files {
		b.OnClose(f)
	}
	return b, nil
}

// systemdLog locks and reads systemd's log on a TPM device (nil elsewhere,
// or when there is none to carry).
func systemdLog(ctx context.Context, dev mr.Device, opts Options) (*cel.SystemdLog, error) {
	if opts.NoSystemdLog || dev.Kind() != "tpm" {
		return nil, nil
	}
	sd, err := cel.LockSystemdLog(ctx, opts.SystemdLog, 0)
	switch {
	case err == nil:
		return sd, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return nil, nil
	case errors.Is(err, cel.ErrIncomplete):
		if opts.Warn != nil {
			opts.Warn(fmt.Sprintf("systemd's measurement log is left out: %v", err))
		}
		return nil, nil
	}
	return nil, fmt.Errorf("systemd log: %w", err)
}

// imaLog attaches the IMA list at path, cut to the entries the evidence
// covers, without reading it into memory. A list that does not exist or
// cannot be read for want of permission is left out (nil log); one that is
// not a regular file (a FIFO, a device) is an error: opened with
// O_NONBLOCK, it is refused at once instead of blocking beyond SIGTERM.
func imaLog(ctx context.Context, ev *mr.Evidence, path string) (*bundle.Log, io.Closer, error) {
	path = bankList(ev, path)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("IMA list: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file: %w", path, mr.ErrMalformed)
	}
	var size int64
	if err == nil {
		size, err = quotedIMAPrefix(ctx, ev, f, path)
	}
	if err != nil || size == 0 {
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("IMA list: %w", err)
		}
		return nil, nil, nil
	}
	l := &bundle.Log{Format: string(listFormat(path)), Source: path}
	// The kernel only appends to the list: the first size bytes stay as
	// they were measured while it grows.
	l.Attach(f, size)
	return l, f, nil
}

// bankList chooses the list of the bank the evidence needs. Given the
// kernel's SHA-1 list (binary_runtime_measurements), it takes the per-bank
// list of Linux 6.10 and later next to it when there is one: of the quoted
// bank on a TPM (the bank quotedIMAPrefix cuts by, sha256 when quoted), of
// sha384 elsewhere (mr_ima folds sha384(template data), that list's own
// hashes). Any other path is kept as given.
func bankList(ev *mr.Evidence, path string) string {
	if filepath.Base(path) != "binary_runtime_measurements" {
		return path
	}
	bank := mr.SHA384
	if ev.Platform == mr.PlatformTPM && len(ev.TPMQuotes) > 0 {
		bank = ev.TPMQuotes[0].Alg
		for _, c := range ev.TPMQuotes {
			if c.Alg == mr.SHA256 {
				bank = c.Alg
			}
		}
	}
	if bank == mr.SHA1 {
		return path
	}
	p := filepath.Join(filepath.Dir(path), ima.ListFileName(false, bank))
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	return path
}

// listFormat is the format of the binary list at path: the per-bank format
// its kernel file name says, ima-binary otherwise.
func listFormat(path string) eventlog.Format {
	if f, ok := ima.FileNameFormat(path); ok {
		if ascii, _, _ := ima.FormatBank(f); !ascii {
			return f
		}
	}
	return eventlog.FormatIMABinary
}

// quotedIMAPrefix is the byte length of the part of a TPM guest's IMA list
// its quote covers, found by a streaming pass. The list is read after the
// quote and the kernel keeps measuring, so it may end with entries the
// quoted PCRs do not hold yet; the verifier replays the whole list it is
// given against the quoted PCRs and would refuse them. Entries after the
// cut are in the next quote. Other platforms' lists (proven by mr_ima
// records, not by a quoted PCR) are kept whole, as far as they are now.
func quotedIMAPrefix(ctx context.Context, ev *mr.Evidence, f io.ReaderAt, path string) (int64, error) {
	list := io.NewSectionReader(f, 0, MaxIMAList+1)
	if ev.Platform == mr.PlatformTPM && len(ev.TPMQuotes) > 0 {
		q := ev.TPMQuotes[0]
		for _, c := range ev.TPMQuotes {
			if c.Alg == mr.SHA256 {
				q = c
			}
		}
		quoted := map[int]mr.Digest{}
		for i, v := range q.PCRs {
			quoted[i] = mr.Digest{Alg: q.Alg, Bytes: v}
		}
		for _, padded := range []bool{false, true} {
			if padded && (q.Alg == mr.SHA1 || listFormat(path) != eventlog.FormatIMABinary) {
				break // padded banks are of kernels before 5.8: SHA-1 lists only
			}
			list.Seek(0, io.SeekStart)
			rd, err := ima.NewFormatReader(listFormat(path), list, ima.Options{File: path})
			if err != nil {
				return 0, err
			}
			_, off, ok, err := ima.QuotedPrefix(ctx, rd, q.Alg, quoted, padded)
			if err != nil {
				return 0, err
			}
			if ok {
				return off, nil
			}
		}
		// No prefix is quoted: the whole list goes, and the verifier
		// says why.
	}
	list.Seek(0, io.SeekStart)
	n, err := countContext(ctx, list)
	if err != nil {
		return 0, err
	}
	if n > MaxIMAList {
		return 0, fmt.Errorf("%s: more than %d bytes: %w", path, int64(MaxIMAList), mr.ErrMalformed)
	}
	return n, nil
}

// countContext counts the bytes r holds, stopping when ctx ends.
func countContext(ctx context.Context, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := context.Cause(ctx); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
