package verifier

// systemd's userspace measurement log in a bundle (format systemd): replayed
// from where the firmware log leaves the PCRs both extend, against the
// quote (fwlog.go, userspaceJoin). The honest bundle is SeaBIOS's real TCG2
// log from `make e2e` with a systemd-stub event on PCR 11, and a systemd log
// of four boot phases on PCR 11 and a machine-id on PCR 15, quoted in
// sha256 by a pinned key; every attack asserts the SAFE outcome.

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// sdRec is one record of systemd's log, as systemd 257 writes it: sha256
// and sha1 of word.
func sdRec(pcr string, word string, banks ...string) string {
	if len(banks) == 0 {
		banks = []string{"sha256", "sha1"}
	}
	var ds []string
	for _, b := range banks {
		var d []byte
		switch b {
		case "sha256":
			s := sha256.Sum256([]byte(word))
			d = s[:]
		case "sha1":
			s := sha1.Sum([]byte(word))
			d = s[:]
		}
		ds = append(ds, fmt.Sprintf(`{"hashAlg":%q,"digest":%q}`, b, hex.EncodeToString(d)))
	}
	return "\x1e{" + pcr + `,"digests":[` + strings.Join(ds, ",") + `],"content_type":"systemd","content":{"string":"` + word +
		`","bootId":"e9aebb1e0f39443a97494a803ed4ea05","timestamp":13180470129,"eventType":"phase"}}` + "\n"
}

// sdJoin is an honest bundle and its options; fw and sd are its logs, pcrs
// its quoted sha256 values.
type sdJoin struct {
	fw, sd []byte
	nonce  []byte
	extra  map[int][]byte // quoted values replacing the honest ones
}

const sdHonest = `"pcr":11|enter-initrd "pcr":11|leave-initrd "pcr":11|sysinit "pcr":15|machine-id:00112233445566778899aabbccddeeff "pcr":11|ready`

func sdLog(spec string) []byte {
	var b strings.Builder
	for _, f := range strings.Fields(spec) {
		reg, word, _ := strings.Cut(f, "|")
		b.WriteString(sdRec(reg, word))
	}
	return []byte(b.String())
}

// newSDJoin builds the honest bundle: fw (SeaBIOS's log plus a stub event
// on PCR 11) and the systemd log of sdHonest.
func newSDJoin(t *testing.T) *sdJoin {
	t.Helper()
	b := readE2EBundle(t)
	fw := append([]byte(nil), b.Logs[logIndex(t, b, "tcg2")].Data...)
	fw = appendTCG2Event(fw, 11, 0xd, []byte("systemd-stub: .linux\x00"))
	return &sdJoin{fw: fw, sd: sdLog(sdHonest), nonce: []byte("systemd join nonce")}
}

// quoted replays fw in sha256 (PCR 0-7 and 11), then sd from there (or
// from zero), as the TPM would hold them.
func (j *sdJoin) quoted(t *testing.T, sd []byte) map[int][]byte {
	t.Helper()
	l, err := tcg.Parse("fw", j.fw, "tcg2")
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for _, v := range res.Registers {
		var i int
		if _, err := fmt.Sscanf(v.Register.Name, "pcr%d", &i); err == nil && v.Digest.Alg == mr.SHA256 {
			pcrs[i] = v.Digest.Bytes
		}
	}
	for _, rec := range bytes.Split(sd, []byte{0x1e}) {
		var i int
		if _, err := fmt.Sscanf(string(rec), `{"pcr":%d`, &i); err != nil {
			continue
		}
		k := bytes.Index(rec, []byte(`"sha256","digest":"`))
		if k < 0 {
			continue
		}
		d, _ := hex.DecodeString(string(rec[k+19 : k+19+64]))
		v := pcrs[i]
		if v == nil {
			v = make([]byte, 32)
		}
		n, _ := mr.Extend(mr.Digest{Alg: mr.SHA256, Bytes: v}, d)
		pcrs[i] = n.Bytes
	}
	return pcrs
}

// bundle quotes pcrs (the PCRs given, as the TPM holds them) next to fw and sd.
func (j *sdJoin) bundle(t *testing.T, fw, sd []byte, pcrs map[int][]byte) (*bundle.Bundle, Options) {
	t.Helper()
	q, ak := tpmQuoteOver(t, j.nonce, pcrs)
	nb := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: j.nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}}}
	if fw != nil {
		nb.Logs = append(nb.Logs, bundle.Log{Format: "tcg2", Source: "firmware", Data: fw})
	}
	if sd != nil {
		nb.Logs = append(nb.Logs, bundle.Log{Format: "systemd", Source: "/run/log/systemd/tpm2-measure.log", Data: sd})
	}
	return nb, Options{TrustedKeys: [][]byte{ak}, Nonce: j.nonce}
}

func TestSystemdJointReplay(t *testing.T) {
	j := newSDJoin(t)
	b, o := j.bundle(t, j.fw, j.sd, j.quoted(t, j.sd))
	rep := verifyT(t, b, o)
	txt := reportText(rep)
	if !rep.Trusted || len(rep.Weakened) > 0 {
		t.Fatalf("the honest joint bundle is not plainly trusted:\n%s", txt)
	}
	if !strings.Contains(txt, "5 records replay to the quoted pcr11, pcr15 (pcr11 after logs[0] (tcg2))") ||
		!strings.Contains(txt, "to where logs[1] (systemd) starts on 2 register values") ||
		!strings.Contains(txt, "pcr11 sha1, pcr15 sha1 not in the evidence") {
		t.Fatalf("the report does not say what the joint replay checked:\n%s", txt)
	}
	// Neither log alone replays to the quoted PCR 11: without the firmware
	// log systemd's records start at zero.
	b, o = j.bundle(t, nil, j.sd, j.quoted(t, j.sd))
	rep = mustRefuse(t, b, o, "systemd's log without the firmware log that holds the stub's PCR 11 event")
	if f := rep.Layers[LayerLogs].Failure; f == nil || f.Register != "pcr11" || !strings.Contains(f.Reason, "from the reset value") {
		t.Fatalf("want a pcr11 mismatch from the reset value:\n%s", reportText(rep))
	}
	// A PCR only systemd extends starts at its reset value: PCR 15 alone.
	only15 := sdLog(`"pcr":15|machine-id:00112233445566778899aabbccddeeff`)
	p := j.quoted(t, only15)
	b, o = j.bundle(t, nil, only15, map[int][]byte{15: p[15]})
	if rep := verifyT(t, b, o); !rep.Trusted {
		t.Fatalf("a PCR 15 only systemd extends, from zero:\n%s", reportText(rep))
	}
}

// The log Debian trixie's systemd-pcrextend wrote (eventlog/cel/testdata),
// quoted as swtpm held it: PCR 11 from zero.
func TestSystemdRealLogInBundle(t *testing.T) {
	sd, err := os.ReadFile("../eventlog/cel/testdata/systemd-257-pcrextend.log")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("38d2047d0545f701a253005037bd1d1662e5f59388885f9e9443f38e2f23531e")
	j := newSDJoin(t)
	b, o := j.bundle(t, nil, sd, map[int][]byte{11: want})
	if rep := verifyT(t, b, o); !rep.Trusted || !strings.Contains(reportText(rep), "4 records replay to the quoted pcr11") {
		t.Fatalf("the real systemd log with the PCR 11 swtpm held:\n%s", reportText(rep))
	}
	want[0] ^= 1
	b, o = j.bundle(t, nil, sd, map[int][]byte{11: want})
	mustRefuse(t, b, o, "the real systemd log against another PCR 11")
}

func TestSystemdJointAttacks(t *testing.T) {
	j := newSDJoin(t)
	honest := j.quoted(t, j.sd)
	failAt := func(t *testing.T, b *bundle.Bundle, o Options, what, reg, reason string, rec int) {
		t.Helper()
		rep := mustRefuse(t, b, o, what)
		if rep == nil {
			t.Logf("%s: unusable input (safe)", what)
			return
		}
		f := rep.Layers[LayerLogs].Failure
		if rep.FailedLayer() != LayerLogs || f == nil || !strings.Contains(f.Reason, reason) || (reg != "" && f.Register != reg) || f.Record != rec {
			t.Fatalf("%s: want layer 1 to fail at record %d on %q with %q:\n%s", what, rec, reg, reason, reportText(rep))
		}
	}
	t.Run("reordered", func(t *testing.T) {
		recs := bytes.SplitAfter(j.sd, []byte("\n"))
		recs[0], recs[1] = recs[1], recs[0]
		b, o := j.bundle(t, j.fw, bytes.Join(recs, nil), honest)
		failAt(t, b, o, "two systemd records swapped", "pcr11", "does not give the quoted pcr11", -1)
	})
	t.Run("dropped", func(t *testing.T) {
		recs := bytes.SplitAfter(j.sd, []byte("\n"))
		b, o := j.bundle(t, j.fw, bytes.Join(append(recs[:1:1], recs[2:]...), nil), honest)
		failAt(t, b, o, "a systemd record taken out", "pcr11", "does not give the quoted pcr11", -1)
	})
	t.Run("one bank", func(t *testing.T) {
		// leave-initrd with its sha256 digest only: the sha1 bank the first
		// record holds cannot be replayed (and the quote, in sha256, would
		// not notice).
		sd := sdLog(`"pcr":11|enter-initrd`)
		sd = append(sd, sdRec(`"pcr":11`, "leave-initrd", "sha256")...)
		b, o := j.bundle(t, j.fw, sd, j.quoted(t, sd))
		failAt(t, b, o, "a record with a digest for one bank only", "", "no sha1 digest", 1)
	})
	t.Run("finished PCR", func(t *testing.T) {
		// A record on PCR 4, which SeaBIOS closed with EV_SEPARATOR, and a
		// quote that agrees with it: the rule, not the values, must fail it.
		sd := append(append([]byte(nil), j.sd...), sdRec(`"pcr":4`, "EFI app")...)
		b, o := j.bundle(t, j.fw, sd, j.quoted(t, sd))
		failAt(t, b, o, "a systemd record on a PCR the firmware log finished", "pcr4", "EV_SEPARATOR", 5)
	})
	t.Run("unquoted PCR", func(t *testing.T) {
		sd := append(append([]byte(nil), j.sd...), sdRec(`"pcr":12`, "credentials")...)
		b, o := j.bundle(t, j.fw, sd, honest) // PCR 12 not quoted
		failAt(t, b, o, "a record on a PCR the quote does not cover", "pcr12", "does not cover", 5)
	})
	t.Run("cut", func(t *testing.T) {
		b, o := j.bundle(t, j.fw, j.sd[:len(j.sd)-7], honest)
		failAt(t, b, o, "a log cut mid-record (a writer killed)", "", "incomplete", 4)
	})
	t.Run("tail", func(t *testing.T) {
		recs := bytes.SplitAfter(j.sd, []byte("\n"))
		b, o := j.bundle(t, j.fw, bytes.Join(recs[2:], nil), honest)
		b.Logs[1].Offset = int64(len(recs[0]) + len(recs[1]))
		failAt(t, b, o, "a tail of systemd's log", "", "is a tail", -1)
	})
	t.Run("two logs", func(t *testing.T) {
		b, o := j.bundle(t, j.fw, j.sd, honest)
		b.Logs = append(b.Logs, b.Logs[1])
		failAt(t, b, o, "two systemd logs", "", "two systemd logs", -1)
	})
	t.Run("edited word", func(t *testing.T) {
		// The text says "ready" where systemd measured "sysinit": the
		// digests kept, the record is no longer bound to its text.
		sd := bytes.Replace(j.sd, []byte(`"string":"sysinit"`), []byte(`"string":"ready!!"`), 1)
		b, o := j.bundle(t, j.fw, sd, honest)
		rep := verifyT(t, b, o)
		if !rep.Trusted || !strings.Contains(reportText(rep), "the content of 1 records is not checked") {
			t.Fatalf("an edited word is reported as checked:\n%s", reportText(rep))
		}
	})
	t.Run("nv index", func(t *testing.T) {
		// systemd 258's NvPCR records: reported as not checked, never as
		// proven.
		sd := append(append([]byte(nil), j.sd...), []byte(strings.Replace(sdRec(`"pcr":11`, "nvpcr-init"), `"pcr":11`, `"nv_index":16777472`, 1))...)
		b, o := j.bundle(t, j.fw, sd, honest)
		rep := verifyT(t, b, o)
		txt := reportText(rep)
		if !rep.Trusted || !strings.Contains(txt, "1 records of NV indexes are not checked") || !strings.Contains(txt, "5 records replay to the quoted pcr11, pcr15") {
			t.Fatalf("an NV index record is not reported as not checked:\n%s", txt)
		}
	})
	t.Run("on a runtime register", func(t *testing.T) {
		b := readE2EBundle(t)
		ak, nonce := e2eAKAndNonce(t)
		o := Options{Name: "e2e", TrustedKeys: [][]byte{ak}, Nonce: nonce}
		b.Logs = append(b.Logs, bundle.Log{Format: "systemd", Data: []byte(sdRec(`"pcr":14`, "x"))})
		failAt(t, b, o, "a systemd record on the runtime log's backing PCR 14", "pcr14", "backing register of a runtime log", 0)
	})
}
