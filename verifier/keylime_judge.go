package verifier

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
)

// keylimeJudge is the state of one pass of a runtime policy over the list:
// the keys ima-sig signatures are checked with, which grow as accepted
// keyring buffers load keys (ImaKeyrings in Keylime).
type keylimeJudge struct {
	rp   *RuntimePolicy
	keys []ima.Key
	// stopped says why an exclude match of the entry being judged stopped
	// before its end (the entry was then judged, not excluded); judgeFiles
	// reads and clears it after each entry.
	stopped string
}

// excluded reports whether the excludes skip path, noting a match that
// stopped before its end.
func (j *keylimeJudge) excluded(path string) bool {
	ok, stopped := j.rp.excludes.matchTimed(path)
	if stopped != "" {
		j.stopped = stopped
	}
	return ok
}

// keylimeIMAPCR is Keylime's config.IMA_PCR: the one PCR whose entries
// ast.Entry.invalid accepts.
const keylimeIMAPCR = 10

// evmXattrPortableDigsig is the signature type of evmctl's portable
// signatures (EVM_XATTR_PORTABLE_DIGSIG); EVM_IMA_XATTR_DIGSIG is 3.
const evmXattrPortableDigsig = 5

func newKeylimeJudge(rp *RuntimePolicy) *keylimeJudge {
	return &keylimeJudge{rp: rp, keys: append([]ima.Key(nil), rp.keys...)}
}

// judgeEntry judges one proven IMA entry against a Keylime runtime policy
// as Keylime's verifier does (keylime/ima/ast.py Entry.invalid and the
// _validate_* functions of keylime/ima/ima.py), in its order:
//
//   - the entry must be of a template Keylime reads (ima, ima-ng,
//     ima-sig, ima-buf);
//   - the entry must be on PCR 10 (config.IMA_PCR): Keylime's
//     Entry.invalid fails any other before anything else, a violation
//     or an excluded name included;
//   - a violation (a listed template hash of zeros) fails unless the
//     verification policy allows violations (ima.allow_violations), and is
//     then passed without judging its name;
//   - the listed template hash must be ima.log_hash_alg of the template
//     data (ccmr's lists carry SHA-1 template hashes, so any other
//     algorithm fails every entry, as in Keylime);
//   - ima-sig: an excluded name passes; a signature that verifies with a
//     key of verification-keys or one loaded by an earlier keyring buffer
//     passes whatever digests says; otherwise as ima-ng. A portable
//     signature (type 5) is verified as type 3 is, over the file digest,
//     as Keylime's integrity_digsig_verify does;
//   - ima, ima-ng: an excluded name passes, else the name must be in
//     digests with the entry's digest (boot_aggregate: the value layer 3
//     matched against the quoted PCRs passes, as Keylime adds it);
//   - ima-buf holding a key: skipped when ima.ignored_keyrings names its
//     keyring (or "*"); else excluded or in keyrings, and its key is then
//     loaded for the signatures of later entries;
//   - any other ima-buf: excluded or in ima-buf. Never in digests.
//
// It returns "judged", "signed", "excluded", "ignored" or "violation", or
// the reason the entry fails.
func (r *run) judgeEntry(j *keylimeJudge, e *ima.Entry) (string, error) {
	rp := j.rp
	path := e.FileName()
	switch e.TemplateName {
	case ima.TemplateIMA, ima.TemplateIMANG, ima.TemplateIMASig, ima.TemplateIMABuf:
	default:
		return "", fmt.Errorf("IMA entry %q has template %s, which Keylime does not read (it fails the entry)", path, e.TemplateName)
	}
	if e.PCR != keylimeIMAPCR {
		return "", fmt.Errorf("IMA entry %q is on PCR %d: Keylime fails every entry on a PCR other than %d (config IMA_PCR)", path, e.PCR, keylimeIMAPCR)
	}
	if e.IsViolation() {
		if rp.allowViolations {
			return "violation", nil
		}
		return "", fmt.Errorf("IMA violation entry for %q (its content was not measured; the policy's ima.allow_violations passes violations)", path)
	}
	if rp.logHashAlg != "sha1" {
		return "", fmt.Errorf("IMA entry %q: the runtime policy's ima.log_hash_alg is %s, but the list's template hashes are SHA-1: Keylime fails every entry", path, rp.logHashAlg)
	}
	if len(e.TemplateData) == 0 {
		return "", fmt.Errorf("IMA entry %q: its template data cannot be rebuilt, so its template hash cannot be checked", path)
	}
	if h := sha1.Sum(e.TemplateData); !bytes.Equal(h[:], e.TemplateHash) {
		return "", fmt.Errorf("IMA entry %q: listed template hash %x is not the sha1 of its template data (%x)", path, e.TemplateHash, h)
	}
	_, d, ok := e.FileDigest()
	if !ok {
		return "", fmt.Errorf("IMA entry %q (%s) has no digest the runtime policy can judge", path, e.TemplateName)
	}
	dh := hex.EncodeToString(d)
	switch e.TemplateName {
	case ima.TemplateIMABuf:
		return j.judgeBuf(e, path, dh)
	case ima.TemplateIMASig:
		if len(e.Signature()) > 0 {
			if j.excluded(path) {
				return "excluded", nil
			}
			if ima.VerifySignature(portableAsDigsig(e), j.keys) == nil {
				return "signed", nil
			}
		}
	}
	if path == ima.BootAggregateName && r.ima.bootAggregate[e.Index] {
		return "judged", nil // Keylime adds the computed boot_aggregate to digests
	}
	return j.judgeDigest("digests", rp.allowed, path, dh)
}

// portableAsDigsig returns e, or, when its signature is a portable one
// (type 5), a copy whose signature reads as type 3: Keylime's
// integrity_digsig_verify accepts both types and verifies both the same
// way, a signature over the file digest (the header is not signed).
func portableAsDigsig(e *ima.Entry) *ima.Entry {
	sig := e.Signature()
	if len(sig) == 0 || sig[0] != evmXattrPortableDigsig {
		return e
	}
	c := *e
	c.Fields = append([]ima.Field(nil), e.Fields...)
	for i, f := range c.Fields {
		if f.ID == ima.FieldSig {
			d := append([]byte(nil), f.Data...)
			d[0] = 3
			c.Fields[i].Data = d
		}
	}
	return &c
}

// judgeDigest is Keylime's _validate_ima_ng over one digests object.
func (j *keylimeJudge) judgeDigest(member string, set map[string]map[string]bool, path, dh string) (string, error) {
	if j.excluded(path) {
		return "excluded", nil
	}
	allowed, listed := set[path]
	if !listed {
		if member == "digests" {
			return "", fmt.Errorf("file %q is not in the runtime policy (digest %s)", path, dh)
		}
		return "", fmt.Errorf("%q (digest %s) is not in the runtime policy's %s", path, dh, member)
	}
	if !allowed[dh] {
		if member == "digests" {
			return "", fmt.Errorf("file %q has digest %s, not a reference digest of the runtime policy", path, dh)
		}
		return "", fmt.Errorf("%q has digest %s, not one the runtime policy's %s lists for it", path, dh, member)
	}
	return "judged", nil
}

// judgeBuf is Keylime's _validate_ima_buf: a buffer holding a key is a key
// measured into the keyring the entry names.
func (j *keylimeJudge) judgeBuf(e *ima.Entry, keyring, dh string) (string, error) {
	rp := j.rp
	key, err := bufferKey(e.Buf(), fmt.Sprintf("key measured into keyring %q", keyring))
	switch {
	case errors.Is(err, errNotKey):
		return j.judgeDigest("ima-buf", rp.buf, keyring, dh)
	case err != nil:
		return "", err
	}
	if rp.ignoredKeyring(keyring) {
		return "ignored", nil // Keylime neither judges nor loads it
	}
	what, err := j.judgeDigest("keyrings", rp.keyrings, keyring, dh)
	if err != nil {
		return "", fmt.Errorf("key measured into keyring %q: %w", keyring, err)
	}
	// Keylime loads the key once the entry passed (also when excluded).
	j.keys = append(j.keys, key)
	return what, nil
}

// ignoredKeyring reports whether ima.ignored_keyrings names keyring (or "*").
func (rp *RuntimePolicy) ignoredKeyring(keyring string) bool {
	if rp.IMA == nil {
		return false
	}
	for _, k := range rp.IMA.IgnoredKeyrings {
		if k == "*" || k == keyring {
			return true
		}
	}
	return false
}
