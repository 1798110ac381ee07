package verifier

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// bootBundle is a TPM bundle whose sha256 quote of PCR 0-9 is what the
// firmware log fw replays to, with fw as its log; and the options that
// trust it.
func bootBundle(t *testing.T, fw []byte) (*bundle.Bundle, Options) {
	t.Helper()
	nonce := []byte("measured boot nonce")
	q, ak := tpmQuoteOver(t, nonce, replaySHA256PCRs(t, fw, 10))
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}},
		Logs:     []bundle.Log{{Format: "tcg2", Source: "firmware", Data: fw}}}
	return b, Options{Name: "boot", TrustedKeys: [][]byte{ak}, Nonce: nonce}
}

// bootPolicy is the measured_boot policy `ccmr policy create
// --measured-boot` writes for fw, read back as a policy file is.
func bootPolicy(t *testing.T, fw []byte) *Policy {
	t.Helper()
	fl, err := tcg.Parse("reference.log", fw, "tcg2")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := MeasuredBootFrom(fl, nil)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(map[string]any{"measured_boot": mb})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(js, t.TempDir())
	if err != nil {
		t.Fatalf("the written policy does not read back: %v\n%s", err, js)
	}
	return p
}

// A known-good boot (the e2e SeaBIOS log, plus a boot loader's events on
// PCR 8 and 9) passes its own measured-boot reference; a firmware update
// that changes one event fails naming that record; the same events
// interleaved differently across registers (same values) pass, explained;
// the allowed events of one register in another order fail, explained.
func TestMeasuredBootPolicy(t *testing.T) {
	e2e, _ := e2eTrustedTPM(t)
	base := append([]byte(nil), e2e.Logs[logIndex(t, e2e, "tcg2")].Data...)
	evA := []byte("grub_cmd: linux /vmlinuz ro quiet\x00")
	evB := []byte("grub_cmd: initrd /initrd.img\x00")
	evB2 := []byte("grub_cmd: initrd /initrd-evil.img\x00")
	evC := []byte("/boot/vmlinuz-6.8.0\x00")
	build := func(evs ...[]byte) []byte {
		fw := append([]byte(nil), base...)
		for _, e := range evs {
			pcr := uint32(8)
			if string(e) == string(evC) {
				pcr = 9
			}
			fw = appendTCG2Event(fw, pcr, 0xd, e)
		}
		return fw
	}
	ref := build(evA, evB, evC)
	p := bootPolicy(t, ref)
	if n := len(p.MeasuredBoot.Registers["pcr8"]); n != 2 {
		t.Fatalf("reference holds %d events on pcr8, want 2", n)
	}

	b, o := bootBundle(t, ref)
	o.Policy = p
	rep := verifyT(t, b, o)
	if !rep.Trusted || !strings.Contains(reportText(rep), "measured_boot: the firmware events of pcr0") {
		t.Fatalf("the reference boot does not pass its own measured_boot policy:\n%s", reportText(rep))
	}

	t.Run("changed event", func(t *testing.T) {
		fw := build(evA, evB2, evC)
		b, o := bootBundle(t, fw)
		o.Policy = p
		rep := mustRefuse(t, b, o, "a changed boot event")
		if testing.Verbose() {
			t.Log(reportText(rep))
		}
		f := rep.Layers[LayerPolicy].Failure
		fl, _ := tcg.Parse("x", fw, "tcg2")
		last := fl.Events[len(fl.Events)-2] // evB2, before evC
		if rep.FailedLayer() != LayerPolicy || f.Register != "pcr8" || f.Record != last.Num || f.Offset != last.Offset ||
			!strings.Contains(f.Reason, "not an event the policy allows") || f.Computed != "EV_IPL "+mr.SHA256.Sum(evB2).String() ||
			f.Expected != "EV_IPL "+mr.SHA256.Sum(evB).String() {
			t.Fatalf("want layer 4 to name record %d at byte %d on pcr8:\n%s", last.Num, last.Offset, reportText(rep))
		}
	})
	t.Run("interleaved", func(t *testing.T) {
		b, o := bootBundle(t, build(evA, evC, evB))
		o.Policy = p
		rep := verifyT(t, b, o)
		if testing.Verbose() {
			t.Log(reportText(rep))
		}
		if !rep.Trusted || !strings.Contains(reportText(rep), "interleaves the registers' events in another order") {
			t.Fatalf("registers interleaved differently (same values) are not passed with an explanation:\n%s", reportText(rep))
		}
	})
	t.Run("reordered", func(t *testing.T) {
		b, o := bootBundle(t, build(evB, evA, evC))
		o.Policy = p
		rep := mustRefuse(t, b, o, "the allowed events of pcr8 in another order")
		if testing.Verbose() {
			t.Log(reportText(rep))
		}
		f := rep.Layers[LayerPolicy].Failure
		if f == nil || f.Register != "pcr8" || !strings.Contains(f.Reason, "allowed events in another order") {
			t.Fatalf("want the reorder explained:\n%s", reportText(rep))
		}
	})
	t.Run("added event", func(t *testing.T) {
		b, o := bootBundle(t, build(evA, evB, evC, evA))
		o.Policy = p
		rep := mustRefuse(t, b, o, "an added boot event")
		if f := rep.Layers[LayerPolicy].Failure; f == nil || f.Register != "pcr8" || f.Record < 0 {
			t.Fatalf("want the added event named:\n%s", reportText(rep))
		}
	})
	t.Run("register not proven", func(t *testing.T) {
		// The policy names pcr9, whose event the log no longer has: PCR 9
		// is quoted at its reset value and no log explains it.
		b, o := bootBundle(t, build(evA, evB))
		o.Policy = p
		rep := mustRefuse(t, b, o, "a policy register no log proves")
		if f := rep.Layers[LayerPolicy].Failure; f == nil || f.Register != "pcr9" || !strings.Contains(f.Reason, "proven by nothing") {
			t.Fatalf("want pcr9 failed closed:\n%s", reportText(rep))
		}
	})
	t.Run("no log", func(t *testing.T) {
		b, o := bootBundle(t, ref)
		b.Logs = nil
		o.Policy = p
		mustRefuse(t, b, o, "a measured_boot policy and no firmware log")
	})
}

// A measured_boot section that would judge nothing, or names what no
// firmware log holds, is refused when the policy is read.
func TestMeasuredBootPolicyMalformed(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, js := range []string{
		`{"measured_boot": {}}`,
		`{"measured_boot": {"registers": {}}}`,
		`{"measured_boot": {"registers": {"pcr8": []}}}`,
		`{"measured_boot": {"registers": {"pcr24": [{"type": "EV_IPL", "digests": ["` + d + `"]}]}}}`,
		`{"measured_boot": {"registers": {"mr_ima": [{"type": "EV_IPL", "digests": ["` + d + `"]}]}}}`,
		`{"measured_boot": {"registers": {"pcr8": [{"type": "EV_IPL"}]}}}`,
		`{"measured_boot": {"registers": {"pcr8": [{"digests": ["` + d + `"]}]}}}`,
		`{"measured_boot": {"registers": {"pcr8": [{"type": "EV_IPL", "digests": ["` + d + `", "` + d + `"]}]}}}`,
		`{"measured_boot": {"registers": {"pcr0": [{"type": "EV_NO_ACTION", "digests": ["` + d + `"]}]}}}`,
		`{"measured_boot": {"registers": {"pcr0": [{"type": "EV_NO_ACTION", "data": "zz"}]}}}`,
		`{"measured_boot": {"registers": {"pcr8": [{"type": "EV_IPL", "digests": ["sha256:ab"]}]}}}`,
		`{"measured_boot": {"registers": {"pcr8": [{"type": "EV_IPL", "digests": ["` + d + `"], "extra": 1}]}}}`,
	} {
		if _, err := ParsePolicy([]byte(js), t.TempDir()); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", js, err)
		}
	}
}

// FuzzMeasuredBootPolicy: a measured_boot section parses or is refused,
// never panics; one that is accepted judges something for every register
// it names.
func FuzzMeasuredBootPolicy(f *testing.F) {
	d := "sha256:" + strings.Repeat("ab", 32)
	f.Add([]byte(`{"measured_boot": {"registers": {"pcr8": [{"record": 3, "type": "EV_IPL", "digests": ["` + d + `"]}], "pcr0": [{"type": "EV_NO_ACTION", "data": "00"}]}}}`))
	f.Add([]byte(`{"measured_boot": {"registers": {"rtmr0": [{"type": "EV_0x1234", "digests": ["sha384:` + strings.Repeat("00", 48) + `"]}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data, t.TempDir())
		if err != nil || p.MeasuredBoot == nil {
			return
		}
		for reg, evs := range p.MeasuredBoot.Registers {
			if !bootRegisterName(reg) || len(evs) == 0 {
				t.Fatalf("accepted %s with %d events", reg, len(evs))
			}
			for _, e := range evs {
				if e.Type == "" || (e.Type != evNoAction && len(e.Digests) == 0) {
					t.Fatalf("accepted an event that judges nothing: %+v", e)
				}
			}
		}
	})
}

// A real CCEL (GCE COS TDX) gives a reference on the CC registers: mrtd
// and rtmr0..rtmr2 by name, every event with its sha384 digest.
func TestMeasuredBootFromCCEL(t *testing.T) {
	fl, err := tcg.Parse("ccel", corpusFile(t, "go-eventlog/ccel/cos-113-intel-tdx.bin"), "ccel")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := MeasuredBootFrom(fl, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, evs := range mb.Registers {
		if name != "mrtd" && !strings.HasPrefix(name, "rtmr") {
			t.Errorf("register %s in a CCEL reference", name)
		}
		for _, e := range evs {
			if e.Type != evNoAction && (len(e.Digests) != 1 || e.Digests[0].Alg != mr.SHA384) {
				t.Errorf("%s event %+v: want one sha384 digest", name, e)
			}
		}
	}
	if len(mb.Registers["rtmr0"]) == 0 || len(mb.Registers["rtmr1"]) == 0 {
		t.Errorf("no rtmr0/rtmr1 events: %v", mb.Registers)
	}
	if _, err := MeasuredBootFrom(fl, []string{"pcr0"}); err == nil {
		t.Error("a CCEL reference of pcr0 was made")
	}
}
