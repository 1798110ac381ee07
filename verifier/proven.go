package verifier

import (
	"encoding/hex"
	"sort"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Proven is every value the evidence proved, as far as verification got:
// the real registers (per bank) and the TDX or SNP platform fields once
// layer 0 passed (the hardware signed them), the virtual registers once
// layer 2 passed. A value layer 0 did not prove is absent, never copied
// from the bundle's claims: `ccmr policy create --from` pins only these.
type Proven struct {
	// Registers are the real registers, sorted by name (pcr2 before
	// pcr10) and bank.
	Registers []ProvenRegister `json:"registers,omitempty"`
	// Virtual are the virtual registers layer 2 replayed, sorted by name.
	Virtual []ProvenRegister `json:"virtual,omitempty"`
	TDX     *ProvenTDX       `json:"tdx,omitempty"`
	SNP     *ProvenSNP       `json:"snp,omitempty"`
}

// ProvenRegister is one register value in one bank.
type ProvenRegister struct {
	Name   string    `json:"name"`
	Digest mr.Digest `json:"digest"`
}

// ProvenTDX are the fields of a verified TDX quote body, in hex, named as
// the policy's tdx section names them.
type ProvenTDX struct {
	Debug         bool   `json:"debug"`
	TDAttributes  string `json:"td_attributes"`
	XFAM          string `json:"xfam"`
	MRTD          string `json:"mrtd"`
	MRConfigID    string `json:"mrconfigid"`
	MROwner       string `json:"mrowner"`
	MROwnerConfig string `json:"mrownerconfig"`
	RTMR0         string `json:"rtmr0"`
	RTMR1         string `json:"rtmr1"`
	RTMR2         string `json:"rtmr2"`
	RTMR3         string `json:"rtmr3"`
	// TEETCBSVN is the TDX module's TCB (TEE_TCB_SVN, 16 SVN bytes).
	TEETCBSVN    string `json:"tee_tcb_svn"`
	MRSeam       string `json:"mrseam"`
	MRSignerSeam string `json:"mrsignerseam"`
}

// ProvenSNP are the fields of a verified SNP report, named as the policy's
// snp section names them.
type ProvenSNP struct {
	Debug       bool   `json:"debug"`
	VMPL        uint32 `json:"vmpl"`
	Policy      string `json:"policy"`
	Measurement string `json:"measurement"`
	HostData    string `json:"host_data"`
	FamilyID    string `json:"family_id"`
	ImageID     string `json:"image_id"`
	// ReportedTCB is REPORTED_TCB, whole (hex) and per SVN.
	ReportedTCB      string `json:"reported_tcb"`
	ReportedTCBParts SNPTCB `json:"reported_tcb_parts"`
	// Signer is VCEK or VLEK; ProductLine the roots that verified it.
	Signer      string `json:"signer"`
	ProductLine string `json:"product_line"`
}

func provenTDX(b *tdxverify.TDReport) *ProvenTDX {
	h := hex.EncodeToString
	return &ProvenTDX{
		Debug:        b.TDAttributes[0]&1 != 0,
		TDAttributes: h(b.TDAttributes[:]), XFAM: h(b.XFAM[:]), MRTD: h(b.MRTD[:]),
		MRConfigID: h(b.MRConfigID[:]), MROwner: h(b.MROwner[:]), MROwnerConfig: h(b.MROwnerConfig[:]),
		RTMR0: h(b.RTMR[0][:]), RTMR1: h(b.RTMR[1][:]), RTMR2: h(b.RTMR[2][:]), RTMR3: h(b.RTMR[3][:]),
		TEETCBSVN: h(b.TeeTCBSVN[:]), MRSeam: h(b.MRSeam[:]), MRSignerSeam: h(b.MRSignerSeam[:]),
	}
}

func provenSNP(res *snpverify.Result) *ProvenSNP {
	h := hex.EncodeToString
	t := res.ReportedTCBParts
	return &ProvenSNP{
		Debug: res.DebugAllowed, VMPL: res.VMPL, Policy: "0x" + strconv.FormatUint(res.Policy, 16),
		Measurement: h(res.Measurement[:]), HostData: h(res.HostData[:]), FamilyID: h(res.FamilyID[:]), ImageID: h(res.ImageID[:]),
		ReportedTCB:      "0x" + strconv.FormatUint(res.ReportedTCB, 16),
		ReportedTCBParts: SNPTCB{Bootloader: t.BlSpl, TEE: t.TeeSpl, SNP: t.SnpSpl, Microcode: t.UcodeSpl},
		Signer:           res.Signer, ProductLine: res.ProductLine,
	}
}

// fillProven sets the report's Proven from what the layers that passed
// proved. Platform fields were kept by judgeTDX/judgeSNP when the hardware
// report verified; they are dropped with the registers when layer 0 failed
// afterwards (a policy, the nonce), as nothing of that layer is then
// reported as proven.
func (r *run) fillProven() {
	p := &Proven{}
	if r.rep.Layers[LayerEvidence].Status == Pass {
		for k, d := range r.trusted {
			p.Registers = append(p.Registers, ProvenRegister{Name: k.name, Digest: d})
		}
		p.TDX, p.SNP = r.platform.tdx, r.platform.snp
	}
	if r.rep.Layers[LayerVirtual].Status == Pass {
		for n, d := range r.virtual {
			p.Virtual = append(p.Virtual, ProvenRegister{Name: n, Digest: d})
		}
	}
	sortRegisters(p.Registers)
	sortRegisters(p.Virtual)
	r.rep.Proven = p
}

// provenPlatform holds the platform fields of a verified hardware report
// until fillProven decides whether they are reported.
type provenPlatform struct {
	tdx *ProvenTDX
	snp *ProvenSNP
}

func sortRegisters(rs []ProvenRegister) {
	sort.Slice(rs, func(i, j int) bool {
		if c := compareNames(rs[i].Name, rs[j].Name); c != 0 {
			return c < 0
		}
		return rs[i].Digest.Alg.String() < rs[j].Digest.Alg.String()
	})
}

// compareNames orders register names by their letters, then by their
// trailing number as a number: pcr2 before pcr10.
func compareNames(a, b string) int {
	pa, na := splitNumber(a)
	pb, nb := splitNumber(b)
	if c := strings.Compare(pa, pb); c != 0 {
		return c
	}
	if na != nb {
		if na < nb {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func splitNumber(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 6 {
		return s, -1
	}
	n, _ := strconv.Atoi(s[i:])
	return s[:i], n
}
