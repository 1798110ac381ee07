package verifier

import (
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
)

// A log's bytes in the bundle may be a tail of the whole log
// (bundle.Log.Offset > 0): the bytes from Offset on. The monitor state
// keeps, at the point it verified, the SHA-256 state of the bytes before
// it (PrefixState), so that a tail continues the hash of the whole log:
// the state keeps the hash of everything it verified whether the bundle
// sent the whole log or only what is new, and a later whole log is
// compared with it as before.

// hashState is the base64 of h's MarshalBinary (a SHA-256 state).
func hashState(h hash.Hash) (string, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return "", errors.New("the hash state cannot be saved")
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// resumeHash is the SHA-256 state s (hashState) restored.
func resumeHash(s string) (hash.Hash, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("prefix_state is no base64: %v", err)
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("prefix_state is no SHA-256 state: %v", err)
	}
	return h, nil
}

// checkPrefixState refuses a hash state that is not the SHA-256 of off
// bytes whose hash is prefix ("" is no state: the entry was written before
// states were kept, and a tail cannot resume it).
func checkPrefixState(s string, off int64, prefix string) error {
	if s == "" {
		return nil
	}
	h, err := resumeHash(s)
	if err != nil {
		return err
	}
	b, _ := base64.StdEncoding.DecodeString(s)
	// The marshalled state ends with the number of bytes hashed.
	if len(b) < 8 || int64(binary.BigEndian.Uint64(b[len(b)-8:])) != off {
		return fmt.Errorf("prefix_state is not the hash of the first %d bytes", off)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != prefix {
		return errors.New("prefix_state and prefix_sha256 disagree")
	}
	return nil
}

// end is the offset in the whole log just after a log's bytes.
func end(lg *bundle.Log) int64 { return lg.Offset + lg.Size() }

// pos is the position in lg's bytes of byte off of the whole log.
func pos(lg *bundle.Log, off int64) int64 { return off - lg.Offset }

// hashRange writes bytes [from, to) of lg's bytes to h, in reads of 1 MiB:
// the prefixes the monitor state hashes are the longest reads of a
// resumed verification.
func hashRange(h hash.Hash, lg *bundle.Log, from, to int64) error {
	if from < 0 || to < from || to > lg.Size() {
		return fmt.Errorf("%w: range %d-%d of a %d-byte log", mr.ErrMalformed, from, to, lg.Size())
	}
	n, err := io.CopyBuffer(h, io.LimitReader(lg.Open(from), to-from), make([]byte, 1<<20))
	if err == nil && n != to-from {
		err = fmt.Errorf("%w: the log ended at byte %d of %d", mr.ErrMalformed, from+n, to)
	}
	return err
}
