package simverify

import (
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

// Layout names the set of registers a sim device emulates. It is fixed when
// the state folder is created, recorded in the state file and named in every
// signed statement.
type Layout string

// The layouts.
const (
	// LayoutTDX (the default): mrtd (index 0), rtmr0..rtmr3 (CC MR index
	// 1..4, sha384, extendable) and the 48-byte read-only fields mrconfigid,
	// mrowner and mrownerconfig (index -1). Every register starts at zeros.
	LayoutTDX Layout = "tdx"
	// LayoutTPM: pcr0..pcr23 in the sha1, sha256 and sha384 banks, modelled
	// on a PC Client TPM seen from locality 0 (see package doc).
	LayoutTPM Layout = "tpm"
)

// ParseLayout parses "tdx" or "tpm".
func ParseLayout(s string) (Layout, error) {
	switch Layout(s) {
	case LayoutTDX, LayoutTPM:
		return Layout(s), nil
	}
	return "", fmt.Errorf("%w: sim layout %q (want tdx or tpm)", mr.ErrUnsupported, s)
}

// tpmBanks are the PCR banks of the TPM layout, in TPM_ALG_ID order.
var tpmBanks = [...]mr.Alg{mr.SHA1, mr.SHA256, mr.SHA384}

// Registers returns the registers of layout l in their stable order: for
// TDX mrtd, rtmr0..rtmr3, mrconfigid, mrowner, mrownerconfig; for TPM
// pcr0 (sha1, sha256, sha384), pcr1 (...), ... pcr23. It returns nil for an
// unknown layout.
func (l Layout) Registers() []mr.Register {
	switch l {
	case LayoutTDX:
		rs := []mr.Register{{Name: "mrtd", Alg: mr.SHA384, Size: 48, Flags: mr.Readable | mr.Reported, Index: 0}}
		for i := 0; i < 4; i++ {
			rs = append(rs, mr.Register{Name: fmt.Sprintf("rtmr%d", i), Alg: mr.SHA384, Size: 48,
				Flags: mr.Readable | mr.Extendable | mr.Reported, Index: i + 1})
		}
		for _, n := range []string{"mrconfigid", "mrowner", "mrownerconfig"} {
			rs = append(rs, mr.Register{Name: n, Alg: mr.SHA384, Size: 48, Flags: mr.Readable | mr.Reported, Index: -1})
		}
		return rs
	case LayoutTPM:
		var rs []mr.Register
		for i := 0; i < 24; i++ {
			f := mr.Readable | mr.Reported
			if TPMExtendable(i) {
				f |= mr.Extendable
			}
			for _, a := range tpmBanks {
				rs = append(rs, mr.Register{Name: fmt.Sprintf("pcr%d", i), Alg: a, Size: a.Size(), Flags: f, Index: i})
			}
		}
		return rs
	}
	return nil
}

// TPMExtendable reports whether PCR index i of the TPM layout can be
// extended: from locality 0 a PC Client TPM extends PCRs 0..16 and 23;
// PCRs 17..22 need localities 2..4 (DRTM), which a guest does not have.
func TPMExtendable(i int) bool { return mr.TPMExtendable(i) }

// TPMResettable reports whether PCR index i could be reset from locality 0
// on a PC Client TPM (PCR 16, the debug PCR, and PCR 23, the application
// PCR). The sim device has no reset operation; the flag is documented so that
// callers choosing a backing register for virtual registers avoid them.
func TPMResettable(i int) bool { return i == 16 || i == 23 }
