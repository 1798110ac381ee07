package verifier

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/mr"
)

// policyDigest is the SHA-256 of what a policy judges with: the policy's
// bytes and the content of every file it references (IMA keys, the runtime
// policy), each length-prefixed so that no two policies share a digest by
// moving bytes between parts. A monitor state records it per machine: an
// entry judged under another policy is not taken as proven.
func policyDigest(b []byte, dir string, pj *policyJSON) (mr.Digest, error) {
	h := sha256.New()
	part := func(p []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	part(b)
	var files []string
	if pj.IMA != nil {
		files = append(files, pj.IMA.Keys...)
		if pj.IMA.RuntimePolicy != "" {
			files = append(files, pj.IMA.RuntimePolicy)
		}
	}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return mr.Digest{}, fmt.Errorf("policy digest: %w", err)
		}
		part(data)
	}
	return mr.Digest{Alg: mr.SHA256, Bytes: h.Sum(nil)}, nil
}
