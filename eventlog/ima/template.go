package ima

import (
	"bytes"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// KnownTemplate reports whether name is a template whose fields this
// package knows. The template name is not covered by the template hash (nor
// by a virtual register's record), so an entry under an unknown name is one
// whose fields a verifier cannot read: it must be refused, not skipped.
func KnownTemplate(name string) bool { return templateFields(name) != nil }

// CheckBufDigest checks that an entry carrying a buf field (ima-buf) has
// the hash of that buffer as its d-ng digest, as the kernel writes it
// (process_buffer_measurement). The template name is not hashed, so this is
// what keeps another template's entry of the same field layout (ima-sig:
// d-ng, n-ng, sig) from being read as ima-buf. Entries without a buf field
// pass. A digest algorithm this package cannot compute is mr.ErrUnsupported;
// a digest that differs is a *eventlog.Mismatch naming the entry.
func CheckBufDigest(file string, e *Entry) error {
	buf, ok := e.Field(FieldBuf)
	if !ok {
		return nil
	}
	name, d, ok := e.FileDigest()
	if !ok {
		return fmt.Errorf("%w: %s entry %d has no d-ng digest", mr.ErrMalformed, e.TemplateName, e.Index)
	}
	alg, err := mr.ParseAlg(name)
	if err != nil {
		return fmt.Errorf("%s entry %d: buffer digest: %w", e.TemplateName, e.Index, err)
	}
	want := alg.Sum(buf)
	if bytes.Equal(want.Bytes, d) {
		return nil
	}
	return &eventlog.Mismatch{File: file, Register: pcrName(e.PCR), Record: e.Index, Offset: e.Offset,
		Expected: want, Computed: mr.Digest{Alg: alg, Bytes: append([]byte(nil), d...)},
		Reason: fmt.Sprintf("IMA entry %d (%s %q): the digest is not the hash of the buffer (an entry of another template relabelled?)", e.Index, e.TemplateName, e.FileName())}
}
