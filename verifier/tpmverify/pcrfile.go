package tpmverify

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ccmr-dev/ccmr/mr"
)

// The "serialized" PCR file of tpm2-tools 5.x (tpm2_quote -o FILE, its
// default -F serialized; tpm2_checkquote -f FILE) is a dump of the tss2 C
// structures in host byte order, little-endian on every platform ccmr runs
// on (lib/pcr.c, pcr_fwrite_serialized / pcr_parse_serialized):
//
//	TPML_PCR_SELECTION  132 bytes: u32 count, then 16 TPMS_PCR_SELECTION of
//	                    8 bytes each: u16 hash, u8 sizeofSelect,
//	                    u8 pcrSelect[4], 1 byte padding
//	u32 n               number of TPML_DIGEST that follow
//	TPML_DIGEST × n     532 bytes each: u32 count, then 8 TPM2B_DIGEST of
//	                    66 bytes each: u16 size, u8 buffer[64]
//
// The digests follow the selection order (bank by bank, ascending PCR),
// eight to a TPML_DIGEST (the most one TPM2_PCR_Read returns).
const (
	pcrSelSize      = 8
	pcrSelMax       = 16
	pcrSelListSize  = 4 + pcrSelMax*pcrSelSize // 132
	digest2BSize    = 2 + 64
	digestListMax   = 8
	digestListSize  = 4 + digestListMax*digest2BSize // 532
	maxDigestLists  = 32                             // TPM2_MAX_PCRS
	pcrSelectMaxLen = 4
)

// MarshalPCRFile returns the serialized PCR file of quote q: the PCRs it
// covers (in bank q.Alg) with the values in q.PCRs, in the form tpm2_quote
// -o writes and tpm2_checkquote -f reads.
func MarshalPCRFile(q mr.TPMQuote) ([]byte, error) {
	return MarshalPCRValues(map[mr.Alg]map[int][]byte{q.Alg: q.PCRs})
}

// MarshalPCRValues returns the serialized PCR file for the given values,
// banks in TPM_ALG_ID order.
func MarshalPCRValues(vals map[mr.Alg]map[int][]byte) ([]byte, error) {
	var banks []mr.Alg
	for a := range vals {
		banks = append(banks, a)
	}
	sort.Slice(banks, func(i, j int) bool { return banks[i] < banks[j] })
	if len(banks) > pcrSelMax {
		return nil, fmt.Errorf("%w: %d banks (at most %d)", mr.ErrUnsupported, len(banks), pcrSelMax)
	}
	out := make([]byte, pcrSelListSize)
	le := binary.LittleEndian
	le.PutUint32(out, uint32(len(banks)))
	var digests [][]byte
	for k, a := range banks {
		var idx []int
		for i := range vals[a] {
			if i < 0 || i >= 8*pcrSelectMaxLen {
				return nil, fmt.Errorf("%w: pcr%d", mr.ErrUnknownRegister, i)
			}
			idx = append(idx, i)
		}
		sort.Ints(idx)
		p := out[4+k*pcrSelSize:]
		le.PutUint16(p, uint16(a))
		p[2] = 3
		for _, i := range idx {
			if len(vals[a][i]) > 64 {
				return nil, fmt.Errorf("%w: pcr%d of %v has %d bytes", mr.ErrDigestSize, i, a, len(vals[a][i]))
			}
			if i >= 24 {
				p[2] = 4
			}
			p[3+i/8] |= 1 << (i % 8)
			digests = append(digests, vals[a][i])
		}
	}
	n := (len(digests) + digestListMax - 1) / digestListMax
	if n > maxDigestLists {
		return nil, fmt.Errorf("%w: %d PCR values (at most %d)", mr.ErrUnsupported, len(digests), maxDigestLists*digestListMax)
	}
	out = le.AppendUint32(out, uint32(n))
	for l := 0; l < n; l++ {
		list := make([]byte, digestListSize)
		chunk := digests[l*digestListMax:]
		if len(chunk) > digestListMax {
			chunk = chunk[:digestListMax]
		}
		le.PutUint32(list, uint32(len(chunk)))
		for j, d := range chunk {
			p := list[4+j*digest2BSize:]
			le.PutUint16(p, uint16(len(d)))
			copy(p[2:], d)
		}
		out = append(out, list...)
	}
	return out, nil
}

// ParsePCRFile parses a serialized PCR file (see MarshalPCRFile) into bank →
// PCR index → value.
func ParsePCRFile(b []byte) (map[mr.Alg]map[int][]byte, error) {
	le := binary.LittleEndian
	bad := func(off int, format string, a ...any) error {
		return fmt.Errorf("%w: PCR file at byte %d: %s", mr.ErrMalformed, off, fmt.Sprintf(format, a...))
	}
	if len(b) < pcrSelListSize+4 {
		return nil, bad(len(b), "%d bytes, shorter than a selection list and count (%d)", len(b), pcrSelListSize+4)
	}
	count := le.Uint32(b)
	if count > pcrSelMax {
		return nil, bad(0, "%d PCR selections (at most %d)", count, pcrSelMax)
	}
	type slot struct {
		alg mr.Alg
		i   int
	}
	var slots []slot
	seen := map[mr.Alg]bool{}
	for k := 0; k < int(count); k++ {
		off := 4 + k*pcrSelSize
		a := mr.Alg(le.Uint16(b[off:]))
		n := int(b[off+2])
		if n > pcrSelectMaxLen {
			return nil, bad(off+2, "sizeofSelect %d (at most %d)", n, pcrSelectMaxLen)
		}
		if seen[a] {
			return nil, bad(off, "bank %v selected twice", a)
		}
		seen[a] = true
		for i := 0; i < 8*n; i++ {
			if b[off+3+i/8]&(1<<(i%8)) != 0 {
				slots = append(slots, slot{a, i})
			}
		}
	}
	off := pcrSelListSize
	nl := le.Uint32(b[off:])
	off += 4
	if nl > maxDigestLists {
		return nil, bad(off-4, "%d digest lists (at most %d)", nl, maxDigestLists)
	}
	if len(b) != off+int(nl)*digestListSize {
		return nil, bad(off, "%d digest lists need %d bytes in all, the file has %d", nl, off+int(nl)*digestListSize, len(b))
	}
	out := map[mr.Alg]map[int][]byte{}
	for a := range seen {
		out[a] = map[int][]byte{}
	}
	k := 0
	for l := 0; l < int(nl); l++ {
		lo := off + l*digestListSize
		n := le.Uint32(b[lo:])
		if n > digestListMax {
			return nil, bad(lo, "digest list %d has %d digests (at most %d)", l, n, digestListMax)
		}
		for j := 0; j < int(n); j++ {
			p := lo + 4 + j*digest2BSize
			size := int(le.Uint16(b[p:]))
			if k >= len(slots) {
				return nil, bad(p, "more digests than selected PCRs (%d)", len(slots))
			}
			s := slots[k]
			k++
			if want := s.alg.Size(); want == 0 || size != want {
				return nil, bad(p, "pcr%d of %v has a %d-byte digest", s.i, s.alg, size)
			}
			out[s.alg][s.i] = append([]byte(nil), b[p+2:p+2+size]...)
		}
	}
	if k != len(slots) {
		return nil, bad(len(b), "%d PCRs selected, %d digests given", len(slots), k)
	}
	return out, nil
}

// QuoteFiles are the files WriteQuoteFiles writes for one bank.
type QuoteFiles struct {
	Alg    mr.Alg
	Attest string // TPMS_ATTEST, for tpm2_checkquote -m
	Sig    string // TPMT_SIGNATURE, for -s
	PCRs   string // serialized PCR file, for -f
}

// WriteQuoteFiles writes the TPM parts of ev into dir so that tpm2-tools can
// check them: ak.pem (for tpm2_checkquote -u), and per bank ALG.attest,
// ALG.sig and ALG.pcrs. Then, for each bank:
//
//	tpm2_checkquote -u ak.pem -m sha256.attest -s sha256.sig -f sha256.pcrs -g sha256 -q NONCEHEX
//
// (-g is the AK's signing hash, sha256 for AKs ccmr creates; the hash of
// each file set's signature is in its .sig file.) It returns the path of the
// AK file and of each bank's files.
func WriteQuoteFiles(dir string, ev *mr.Evidence) (string, []QuoteFiles, error) {
	if ev == nil || ev.Platform != mr.PlatformTPM {
		return "", nil, fmt.Errorf("%w: not TPM evidence", mr.ErrUnsupported)
	}
	ak := filepath.Join(dir, "ak.pem")
	if err := os.WriteFile(ak, ev.PublicKey, 0o644); err != nil {
		return "", nil, err
	}
	var files []QuoteFiles
	for _, q := range ev.TPMQuotes {
		f := QuoteFiles{
			Alg:    q.Alg,
			Attest: filepath.Join(dir, q.Alg.String()+".attest"),
			Sig:    filepath.Join(dir, q.Alg.String()+".sig"),
			PCRs:   filepath.Join(dir, q.Alg.String()+".pcrs"),
		}
		pf, err := MarshalPCRFile(q)
		if err != nil {
			return "", nil, err
		}
		for _, w := range []struct {
			p string
			b []byte
		}{{f.Attest, q.Attest}, {f.Sig, q.Signature}, {f.PCRs, pf}} {
			if err := os.WriteFile(w.p, w.b, 0o644); err != nil {
				return "", nil, err
			}
		}
		files = append(files, f)
	}
	return ak, files, nil
}
