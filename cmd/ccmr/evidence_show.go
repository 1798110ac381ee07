package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/termsafe"
	"github.com/ccmr-dev/ccmr/verifier"
)

// shown is what `evidence show -o json` writes: the verdict, every value
// the evidence proved, and the bundle's claims nothing proved.
type shown struct {
	Format   string            `json:"format"`
	Bundle   string            `json:"bundle"`
	Platform string            `json:"platform"`
	Trusted  bool              `json:"trusted"`
	Verdict  string            `json:"verdict"`
	Failure  *verifier.Failure `json:"failure,omitempty"`
	// FailedLayer is the first layer that failed, -1 for none.
	FailedLayer int              `json:"failed_layer"`
	Proven      *verifier.Proven `json:"proven"`
	// Claimed are register values the bundle claims that nothing proved
	// (a layer failed, or the evidence does not cover them): shown so
	// that they are never mistaken for proven ones.
	Claimed []verifier.ProvenRegister `json:"claimed,omitempty"`
}

func newEvidenceShowCmd(g *globals) *cobra.Command {
	var t trustFlags
	cmd := &cobra.Command{
		Use:   "show BUNDLE|-",
		Short: "Show every value a bundle's evidence proves (registers per bank, TDX/SNP fields, TCB, virtual registers); exit 1 when it does not verify",
		Long: `Verify a bundle (v1 or v2, a file or - for standard input) with verify's trust
flags, then print every value the evidence proves: the registers of each bank and
the TDX or SNP fields once the hardware evidence verified (layer 0), the virtual
registers once layer 2 passed. Register values the bundle only claims are listed
apart, marked "claimed, not proven". Exit 0 when the bundle is trusted (weakened
or not), 1 when it is not (what was proven is printed all the same), 2 for
unusable input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, b, err := verifyBundle(cmd.Context(), cmd.InOrStdin(), args[0], &t)
			if err != nil {
				return err
			}
			defer b.Close()
			s := showOf(rep, b)
			if g.json() {
				err = writeJSON(g.stdout, s)
			} else {
				err = s.writeText(g.stdout)
			}
			if err != nil {
				return err
			}
			if !rep.Trusted {
				return &exitError{code: exitFail, err: fmt.Errorf("%s: not trusted (layer %d failed): only the values listed as proven are", args[0], rep.FailedLayer())}
			}
			return nil
		},
	}
	t.add(cmd.Flags(), true)
	return cmd
}

func showOf(rep *verifier.Report, b *bundle.Bundle) *shown {
	s := &shown{Format: "ccmr-evidence-show/v1", Bundle: rep.Bundle, Platform: rep.Platform, Trusted: rep.Trusted,
		Verdict: rep.Verdict, FailedLayer: rep.FailedLayer(), Proven: rep.Proven}
	if s.Proven == nil {
		s.Proven = &verifier.Proven{}
	}
	if l := s.FailedLayer; l >= 0 {
		s.Failure = rep.Layers[l].Failure
	}
	proven := map[string]bool{}
	for _, r := range append(append([]verifier.ProvenRegister(nil), s.Proven.Registers...), s.Proven.Virtual...) {
		proven[r.Name+" "+r.Digest.Alg.String()] = true
	}
	for _, c := range b.Registers {
		if !proven[c.Name+" "+c.Digest.Alg.String()] {
			s.Claimed = append(s.Claimed, verifier.ProvenRegister{Name: c.Name, Digest: c.Digest})
		}
	}
	return s
}

// writeText prints the values for people; every string from the bundle is
// escaped (termsafe).
func (s *shown) writeText(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %s (platform %s)\n", termsafe.Line(s.Bundle), termsafe.Line(s.Verdict), termsafe.Line(s.Platform))
	if f := s.Failure; f != nil {
		fmt.Fprintf(&sb, "layer %d failed: %s\n", s.FailedLayer, termsafe.Line(f.Reason))
	}
	p := s.Proven
	reg := func(title string, rs []verifier.ProvenRegister) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(&sb, "%s\n", title)
		for _, r := range rs {
			fmt.Fprintf(&sb, "  %-14s %-7s %s\n", termsafe.Line(r.Name), r.Digest.Alg, r.Digest.Hex())
		}
	}
	reg("proven registers (layer 0, signed by the hardware):", p.Registers)
	reg("proven virtual registers (layer 2, replayed from their runtime log):", p.Virtual)
	if t := p.TDX; t != nil {
		fmt.Fprintf(&sb, "proven TDX fields (layer 0):\n")
		for _, f := range [][2]string{{"mrtd", t.MRTD}, {"rtmr0", t.RTMR0}, {"rtmr1", t.RTMR1}, {"rtmr2", t.RTMR2}, {"rtmr3", t.RTMR3},
			{"mrconfigid", t.MRConfigID}, {"mrowner", t.MROwner}, {"mrownerconfig", t.MROwnerConfig}, {"td_attributes", t.TDAttributes},
			{"xfam", t.XFAM}, {"tee_tcb_svn", t.TEETCBSVN}, {"mrseam", t.MRSeam}, {"mrsignerseam", t.MRSignerSeam}} {
			fmt.Fprintf(&sb, "  %-14s %s\n", f[0], f[1])
		}
		fmt.Fprintf(&sb, "  %-14s %v\n", "debug", t.Debug)
	}
	if n := p.SNP; n != nil {
		fmt.Fprintf(&sb, "proven SNP fields (layer 0, %s, %s):\n", termsafe.Line(n.Signer), termsafe.Line(n.ProductLine))
		for _, f := range [][2]string{{"measurement", n.Measurement}, {"host_data", n.HostData}, {"family_id", n.FamilyID}, {"image_id", n.ImageID},
			{"policy", n.Policy}, {"vmpl", fmt.Sprint(n.VMPL)}, {"debug", fmt.Sprint(n.Debug)}, {"reported_tcb", n.ReportedTCB}} {
			fmt.Fprintf(&sb, "  %-14s %s\n", f[0], f[1])
		}
		t := n.ReportedTCBParts
		fmt.Fprintf(&sb, "  %-14s bootloader %d, tee %d, snp %d, microcode %d\n", "tcb", t.Bootloader, t.TEE, t.SNP, t.Microcode)
	}
	if len(p.Registers) == 0 && len(p.Virtual) == 0 && p.TDX == nil && p.SNP == nil {
		fmt.Fprintf(&sb, "nothing proven\n")
	}
	if len(s.Claimed) > 0 {
		fmt.Fprintf(&sb, "claimed by the bundle, NOT proven:\n")
		for _, r := range s.Claimed {
			fmt.Fprintf(&sb, "  %-14s %-7s %s\n", termsafe.Line(r.Name), r.Digest.Alg, r.Digest.Hex())
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
