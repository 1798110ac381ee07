package tcg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	gtcg "github.com/google/go-eventlog/tcg"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// strictData lists the event types whose digest a verifier may require to
// be the hash of the event data: hashesData without the types that real
// firmware logs of the public corpus break honestly. EV_IPL: systemd-stub
// logs a PE section's name and hashes its contents (trustee's
// CCEL_data_grub_gke), systemd-boot's command line hashes other bytes than
// it logs (go-eventlog's arch-linux-workstation). EV_S_CRTM_VERSION: Boot
// Guard firmware logs "2.3.5" and hashes something else (go-tpm-tools'
// gdc-host).
var strictData = func() map[EventType]bool {
	m := map[EventType]bool{}
	for t := range hashesData {
		m[t] = true
	}
	delete(m, EvIPL)
	delete(m, EvSCRTMVersion)
	return m
}()

// DataCheck is what CheckEventData found in a log that passes it.
type DataCheck struct {
	// Checked counts the records whose data hashes to each of their digests.
	Checked int
	// NotChecked counts, per event type name, the records whose digest is
	// not (reliably) the hash of their data: what they measured is only
	// described by the data, which nothing vouches for.
	NotChecked map[string]int
	// NoAction counts, per form (StartupLocality, SP800-155 Event3, ...),
	// the EV_NO_ACTION records other than the header: never extended, in a
	// form a TCG specification defines.
	NoAction map[string]int
}

// NotCheckedText lists NotChecked as "EV_IPL 3, EV_POST_CODE 1".
func (c *DataCheck) NotCheckedText() string { return countsText(c.NotChecked) }

// NoActionText lists NoAction as "StartupLocality 1".
func (c *DataCheck) NoActionText() string { return countsText(c.NoAction) }

func countsText(m map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, m[n])
	}
	return strings.Join(parts, ", ")
}

// CheckEventData checks what a replay cannot: the event data people read.
// A record of a type whose digest the PC Client PFP specification defines
// as the hash of its data (and real firmware keeps it so, see strictData)
// must hash to every digest it carries; an EV_NO_ACTION record, which is
// never extended and so could carry any text, must have one of the forms
// the TCG specifications define (the Spec ID header as record 0,
// StartupLocality, SP800-155 platform ID events, NV index instance and
// dynamic events), all-zero digests, and sit where that form belongs.
// The first violation is returned as a *eventlog.Mismatch naming the record and
// its byte offset (errors.Is eventlog.ErrMismatch).
func (l *Log) CheckEventData() (*DataCheck, error) {
	c := &DataCheck{NotChecked: map[string]int{}, NoAction: map[string]int{}}
	pcr0Extended := false
	tpm := l.Format != eventlog.FormatCCEL
	for i := range l.Events {
		e := &l.Events[i]
		reg, _ := RegisterName(l.Format, e.Index)
		bad := func(computed mr.Digest, expected mr.Digest, format string, a ...any) error {
			return &eventlog.Mismatch{File: l.File, Register: reg, Record: e.Num, Offset: e.Offset,
				Expected: expected, Computed: computed, Reason: fmt.Sprintf("%s: ", e.Type) + fmt.Sprintf(format, a...)}
		}
		if e.Type == EvNoAction {
			form, err := l.noActionForm(e, pcr0Extended)
			if err != "" {
				return c, bad(mr.Digest{}, mr.Digest{}, "%s; an EV_NO_ACTION record is never extended, so its data is vouched for by nothing", err)
			}
			for _, d := range e.Digests {
				if len(bytes.Trim(d.Bytes, "\x00")) != 0 {
					return c, bad(mr.Digest{}, d, "%s record with a non-zero %v digest (the specification writes zeros)", form, d.Alg)
				}
			}
			if form != "" {
				c.NoAction[form]++
			}
			continue
		}
		if tpm && e.Index == 0 {
			pcr0Extended = true
		}
		if !strictData[e.Type] || !dataIsHashed(e) {
			c.NotChecked[e.Type.String()]++
			continue
		}
		var alt []byte
		if e.Type == EvEFIVariableBoot {
			// As dataDigestProblems: the variable's data alone, as many
			// firmwares hash it and the PFP errata allow.
			if v, err := gtcg.ParseUEFIVariableData(bytes.NewReader(e.Data)); err == nil {
				alt = v.VariableData
			}
		}
		for _, d := range e.Digests {
			if !d.Alg.Valid() {
				continue
			}
			got := d.Alg.Sum(e.Data)
			if bytes.Equal(got.Bytes, d.Bytes) || alt != nil && bytes.Equal(d.Alg.Sum(alt).Bytes, d.Bytes) {
				continue
			}
			return c, bad(got, d, "event data does not hash to its %v digest: the data was changed after it was measured (%q)", d.Alg, l.text(e))
		}
		c.Checked++
	}
	return c, nil
}

// dataIsHashed applies dataDigestProblems' per-type rules: only AAEL
// records of EV_EVENT_TAG hash the whole tagged event.
func dataIsHashed(e *Event) bool {
	if e.Type == EvEventTag {
		id, _, ok := TaggedEvent(e.Data)
		return ok && id == AAELTag
	}
	return true
}

var (
	specIDSignature00  = []byte("Spec ID Event00\x00")
	specIDSignature02  = []byte("Spec ID Event02\x00")
	sp800155Event2     = []byte("SP800-155 Event2")
	sp800155Event3     = []byte("SP800-155 Event3")
	nvIndexInstanceSig = []byte("NvIndexInstance\x00")
	nvIndexDynamicSig  = []byte("NvIndexDynamic\x00\x00")
)

// noActionForm names the TCG-defined form of an EV_NO_ACTION record ("" for
// the crypto-agile header), or says why it has none.
func (l *Log) noActionForm(e *Event, pcr0Extended bool) (form, problem string) {
	d := e.Data
	if e.Num == 0 {
		switch {
		case l.CryptoAgile:
			return "", "" // the Spec ID Event03 header, parsed by Parse
		case bytes.HasPrefix(d, specIDSignature00), bytes.HasPrefix(d, specIDSignature02):
			return "Spec ID header", "" // TCG_PCClientSpecIDEventStruct / TCG_EfiSpecIDEventStruct of a SHA1-format log
		}
	}
	switch {
	case bytes.HasPrefix(d, specIDSignature03), bytes.HasPrefix(d, specIDSignature00), bytes.HasPrefix(d, specIDSignature02):
		return "", "a Spec ID event belongs only in record 0"
	case bytes.HasPrefix(d, startupLocalitySig):
		loc, ok := startupLocality(e)
		switch {
		case !ok:
			return "", "a StartupLocality event must be 17 bytes on index 0"
		case loc != 0 && loc != 3 && loc != 4:
			return "", fmt.Sprintf("StartupLocality %d is not a startup locality (0, 3 or 4)", loc)
		case pcr0Extended:
			return "", "StartupLocality after PCR 0 was extended"
		}
		return "StartupLocality", ""
	case bytes.HasPrefix(d, sp800155Event2), bytes.HasPrefix(d, sp800155Event3):
		event3 := bytes.HasPrefix(d, sp800155Event3)
		if e.Index != 0 || !sp800155OK(d, event3) {
			return "", "malformed SP800-155 platform ID event (TCG_Sp800_155_PlatformId_Event2/3 on index 0)"
		}
		if event3 {
			return "SP800-155 Event3", ""
		}
		return "SP800-155 Event2", ""
	case bytes.HasPrefix(d, nvIndexInstanceSig):
		if !nvHeaderOK(d) {
			return "", "malformed NvIndexInstance event (NV_INDEX_INSTANCE_EVENT_LOG_DATA version 1)"
		}
		return "NvIndexInstance", ""
	case bytes.HasPrefix(d, nvIndexDynamicSig):
		if !nvHeaderOK(d) || !nvDynamicOK(d[24:]) {
			return "", "malformed NvIndexDynamic event (NV_INDEX_DYNAMIC_EVENT_LOG_DATA version 1)"
		}
		return "NvIndexDynamic", ""
	}
	return "", fmt.Sprintf("%d bytes in no form a TCG specification defines for EV_NO_ACTION (%q)", len(d), l.text(e))
}

// sp800155OK checks that a TCG_Sp800_155_PlatformId_Event2 (or Event3,
// with its two locators) fills d, up to zero padding.
func sp800155OK(d []byte, event3 bool) bool {
	p := 16 + 4 + 16 // signature, VendorId, ReferenceManifestGuid
	str := func() bool {
		if p >= len(d) {
			return false
		}
		p += 1 + int(d[p])
		return p <= len(d)
	}
	u32 := func() (uint32, bool) {
		if len(d)-p < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(d[p:])
		p += 4
		return v, true
	}
	if !str() || !str() || !str() || !str() { // platform manufacturer, model, version; firmware manufacturer
		return false
	}
	if _, ok := u32(); !ok || !str() { // firmware manufacturer ID, firmware version
		return false
	}
	if event3 {
		for i := 0; i < 2; i++ { // RIM locator, platform certificate locator
			if _, ok := u32(); !ok {
				return false
			}
			n, ok := u32()
			if !ok || uint64(n) > uint64(len(d)-p) {
				return false
			}
			p += int(n)
		}
	}
	// Google's firmware pads the structure with 6 zero bytes
	// (go-tpm-tools' eventlogwithsp800155, trustee's CCEL_data_grub_gke):
	// zeros carry no text.
	return len(bytes.Trim(d[p:], "\x00")) == 0
}

// nvHeaderOK checks the signature, version 1 and zero reserved bytes.
func nvHeaderOK(d []byte) bool {
	return len(d) >= 24 && binary.LittleEndian.Uint16(d[16:]) == 1 && len(bytes.Trim(d[18:24], "\x00")) == 0
}

// nvDynamicOK checks UID, DescriptionSize, Description, DataSize, Data.
func nvDynamicOK(d []byte) bool {
	if len(d) < 10 {
		return false
	}
	n := int(binary.LittleEndian.Uint16(d[8:]))
	d = d[10:]
	if len(d) < n+2 {
		return false
	}
	m := int(binary.LittleEndian.Uint16(d[n:]))
	return len(d[n+2:]) == m
}
