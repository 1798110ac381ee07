// Command e2etool is the host side of `make e2e` (e2e/run.sh): it unpacks
// the evidence bundle the guest sent back, writes a policy whose reference
// values are computed here, independently of ccmr's own parsers, makes
// tampered copies of the bundle, and checks that `ccmr verify -o json`
// failed at the layer each tampering must be caught at.
//
// It parses the IMA binary list and the runtime log itself (a few lines
// each, following the kernel's layout and that of docs/design.md, "The CC
// runtime log") on purpose: the
// reference values it derives must not come from the code under test.
//
//	e2etool unpack BUNDLE DIR
//	e2etool policy -bundle B -manifest M -sysfs-pcrs F -forwarded N -o OUT
//	e2etool tamper-ima BUNDLE OUT ENTRY [rehash]
//	e2etool tamper-runtime BUNDLE OUT RECORD [rehash]
//	e2etool tamper-nonce BUNDLE OUT
//	e2etool expect-fail REPORT LAYER [RECORD]
//	e2etool expect-pass REPORT
//	e2etool mr-ima IMALIST N
//	e2etool ko-depends MODULE.ko
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	ccmrbundle "github.com/ccmr-dev/ccmr/bundle"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "e2etool: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: e2etool unpack|policy|tamper-ima|tamper-runtime|tamper-nonce|expect-fail|expect-pass|mr-ima ...")
	}
	switch cmd, a := args[0], args[1:]; cmd {
	case "unpack":
		if len(a) != 2 {
			return errors.New("usage: unpack BUNDLE DIR")
		}
		return unpack(a[0], a[1])
	case "policy":
		return policyCmd(a)
	case "tamper-ima", "tamper-runtime":
		if len(a) != 3 && (len(a) != 4 || a[3] != "rehash") {
			return fmt.Errorf("usage: %s BUNDLE OUT INDEX [rehash]", cmd)
		}
		idx, err := strconv.Atoi(a[2])
		if err != nil {
			return err
		}
		rehash := len(a) > 3 && a[3] == "rehash"
		if cmd == "tamper-ima" {
			return tamperLog(a[0], a[1], "ima-binary", func(d []byte) error { return flipIMA(d, idx, rehash) })
		}
		return tamperLog(a[0], a[1], "runtime", func(d []byte) error { return flipRuntime(d, idx, rehash) })
	case "tamper-nonce":
		if len(a) != 2 {
			return errors.New("usage: tamper-nonce BUNDLE OUT")
		}
		return tamperNonce(a[0], a[1])
	case "expect-fail", "expect-pass":
		return expect(cmd, a)
	case "ko-depends":
		if len(a) != 1 {
			return errors.New("usage: ko-depends MODULE.ko")
		}
		deps, err := koDepends(a[0])
		if err != nil {
			return err
		}
		for _, d := range deps {
			fmt.Println(d)
		}
		return nil
	case "mr-ima":
		if len(a) != 2 {
			return errors.New("usage: mr-ima IMALIST N")
		}
		n, err := strconv.Atoi(a[1])
		if err != nil {
			return err
		}
		data, err := os.ReadFile(a[0])
		if err != nil {
			return err
		}
		v, err := mrIMA(data, n)
		if err != nil {
			return err
		}
		fmt.Printf("sha384:%x\n", v)
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// koDepends returns the "depends=" list of a kernel module's .modinfo
// section (what modinfo -F depends prints; kmod may not be installed).
func koDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", path, err)
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
		}
	}
	return deps, nil
}

// ---- the bundle, kept as generic JSON so that a tampered copy differs from
// the original only where it was tampered with ----

type bundle map[string]any

func readBundle(path string) (bundle, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(b, []byte("PK")) {
		// A ccmr-evidence/v2 archive (what ccmr quote writes): its v1
		// form, the same evidence and logs, is what the tool edits; ccmr
		// verify reads either.
		if b, err = v1Of(path); err != nil {
			return nil, err
		}
	}
	var m bundle
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m["format"] != "ccmr-evidence/v1" {
		return nil, fmt.Errorf("%s: format %v, want ccmr-evidence/v1", path, m["format"])
	}
	return m, nil
}

// v1Of reads the bundle at path and encodes it as ccmr-evidence/v1.
func v1Of(path string) ([]byte, error) {
	bb, err := ccmrbundle.Open(context.Background(), path)
	if err != nil {
		return nil, err
	}
	defer bb.Close()
	var out bytes.Buffer
	if err := bb.Write(&out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out.Bytes(), nil
}

func (b bundle) write(path string) error {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

// logs returns the bundle's logs with their data decoded.
func (b bundle) logs() ([]map[string]any, [][]byte, error) {
	raw, _ := b["logs"].([]any)
	var ls []map[string]any
	var data [][]byte
	for i, r := range raw {
		l, ok := r.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("logs[%d] is not an object", i)
		}
		s, _ := l["data"].(string)
		d, err := base64Decode(s)
		if err != nil {
			return nil, nil, fmt.Errorf("logs[%d].data: %w", i, err)
		}
		ls = append(ls, l)
		data = append(data, d)
	}
	return ls, data, nil
}

func (b bundle) logData(format string) ([]byte, error) {
	ls, data, err := b.logs()
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		if l["format"] == format {
			return data[i], nil
		}
	}
	return nil, fmt.Errorf("no %s log in the bundle", format)
}

// quotedPCRs returns the PCR values (index → bytes) the bundle's quote of
// bank alg carries.
func (b bundle) quotedPCRs(alg string) (map[int][]byte, error) {
	ev, _ := b["evidence"].(map[string]any)
	qs, _ := ev["tpm_quotes"].([]any)
	for _, q := range qs {
		qm, _ := q.(map[string]any)
		if qm["alg"] != alg {
			continue
		}
		pcrs, _ := qm["pcrs"].(map[string]any)
		out := map[int][]byte{}
		for k, v := range pcrs {
			i, err := strconv.Atoi(k)
			if err != nil {
				return nil, err
			}
			s, _ := v.(string)
			if out[i], err = hex.DecodeString(s); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("no %s quote in the bundle", alg)
}

func unpack(path, dir string) error {
	b, err := readBundle(path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ls, data, err := b.logs()
	if err != nil {
		return err
	}
	for i, l := range ls {
		name := fmt.Sprintf("log%d-%v", i, l["format"])
		if r, _ := l["register"].(string); r != "" {
			name += "-" + r
		}
		if err := os.WriteFile(filepath.Join(dir, name+".bin"), data[i], 0o644); err != nil {
			return err
		}
	}
	ev, _ := b["evidence"].(map[string]any)
	if pk, _ := ev["public_key"].(string); pk != "" {
		if err := os.WriteFile(filepath.Join(dir, "ak-from-bundle.pem"), []byte(pk), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ---- IMA binary list (kernel's ima_measurements_show layout, host
// endianness = little endian on x86) ----

type imaEntry struct {
	offset   int    // of the entry in the list
	dataOff  int    // of the template data
	name     string // template name
	data     []byte // template data
	fileAlg  string // "sha256" for ima-ng/ima-sig, "" when absent
	fileHash []byte
	path     string
}

func parseIMA(b []byte) ([]imaEntry, error) {
	var out []imaEntry
	for off := 0; off < len(b); {
		e := imaEntry{offset: off}
		p := off
		need := func(n int) error {
			if p+n > len(b) || n < 0 {
				return fmt.Errorf("ima list: entry %d at byte %d: truncated", len(out), off)
			}
			return nil
		}
		if err := need(4 + 20 + 4); err != nil {
			return nil, err
		}
		p += 4 + 20
		nl := int(binary.LittleEndian.Uint32(b[p:]))
		p += 4
		if err := need(nl + 4); err != nil {
			return nil, err
		}
		e.name = string(b[p : p+nl])
		p += nl
		dl := int(binary.LittleEndian.Uint32(b[p:]))
		p += 4
		if err := need(dl); err != nil {
			return nil, err
		}
		e.dataOff = p
		e.data = b[p : p+dl]
		p += dl
		if e.name == "ima-ng" || e.name == "ima-sig" || e.name == "ima-modsig" {
			fields, err := splitFields(e.data)
			if err != nil || len(fields) < 2 {
				return nil, fmt.Errorf("ima list: entry %d at byte %d: template %s data: %v", len(out), off, e.name, err)
			}
			d := fields[0] // "ALG:" NUL digest
			if i := bytes.IndexByte(d, 0); i > 0 && d[i-1] == ':' {
				e.fileAlg, e.fileHash = string(d[:i-1]), d[i+1:]
			}
			e.path = strings.TrimRight(string(fields[1]), "\x00")
		}
		out = append(out, e)
		off = p
	}
	return out, nil
}

func splitFields(d []byte) ([][]byte, error) {
	var f [][]byte
	for p := 0; p < len(d); {
		if p+4 > len(d) {
			return nil, errors.New("truncated field length")
		}
		n := int(binary.LittleEndian.Uint32(d[p:]))
		p += 4
		if n < 0 || p+n > len(d) {
			return nil, errors.New("truncated field")
		}
		f = append(f, d[p:p+n])
		p += n
	}
	return f, nil
}

// mrIMA folds v = sha384(v || sha384(template data)) over the first n
// entries, as docs/design.md ("The CC runtime log") defines mr_ima.
func mrIMA(list []byte, n int) ([]byte, error) {
	es, err := parseIMA(list)
	if err != nil {
		return nil, err
	}
	if n > len(es) {
		return nil, fmt.Errorf("ima list has %d entries, fewer than %d", len(es), n)
	}
	v := make([]byte, sha512.Size384)
	for _, e := range es[:n] {
		d := sha512.Sum384(e.data)
		h := sha512.New384()
		h.Write(v)
		h.Write(d[:])
		v = h.Sum(nil)
	}
	return v, nil
}

// flipIMA changes one byte of entry idx's file digest (inside the template
// data, so the list still parses and only the measurement differs). With
// rehash it also rewrites the entry's sha1 template digest, so the entry is
// self-consistent and only mr_ima (or PCR 10) can tell.
func flipIMA(list []byte, idx int, rehash bool) error {
	es, err := parseIMA(list)
	if err != nil {
		return err
	}
	if idx < 0 || idx >= len(es) {
		return fmt.Errorf("ima list has %d entries, no entry %d", len(es), idx)
	}
	e := es[idx]
	if e.fileHash == nil {
		return fmt.Errorf("ima entry %d (%s) has no file digest to change", idx, e.name)
	}
	at := e.dataOff + 4 + len(e.fileAlg) + 2 // length, "ALG:", NUL
	list[at] ^= 0x01
	how := ""
	if rehash {
		d := sha1.Sum(e.data) // e.data aliases list: the changed bytes
		copy(list[e.offset+4:], d[:])
		how = ", template digest recomputed"
	}
	fmt.Printf("tampered ima entry %d (%s): byte %d of the list, first byte of its file digest%s\n", idx, e.path, at, how)
	return nil
}

// flipRuntime changes one hex digit of the content of runtime log record
// idx (a TCG_PCR_EVENT2 carrying an AAEL record, docs/design.md, "The CC
// runtime log"). With rehash it
// also rewrites the record's digests as H(event), so the record is
// self-consistent and only the quoted backing register can tell.
func flipRuntime(l []byte, idx int, rehash bool) error {
	sizes := map[uint16]int{0x0004: 20, 0x000b: 32, 0x000c: 48, 0x000d: 64}
	for p, rec := 0, 0; p < len(l); rec++ {
		start := p
		if p+12 > len(l) {
			return fmt.Errorf("runtime log: record %d at byte %d: truncated", rec, start)
		}
		count := int(binary.LittleEndian.Uint32(l[p+8:]))
		p += 12
		type slot struct {
			alg uint16
			at  int
		}
		var slots []slot
		for i := 0; i < count; i++ {
			if p+2 > len(l) {
				return fmt.Errorf("runtime log: record %d at byte %d: truncated", rec, start)
			}
			n, ok := sizes[binary.LittleEndian.Uint16(l[p:])]
			if !ok {
				return fmt.Errorf("runtime log: record %d at byte %d: unknown algorithm", rec, start)
			}
			slots = append(slots, slot{binary.LittleEndian.Uint16(l[p:]), p + 2})
			p += 2 + n
		}
		if p+4 > len(l) {
			return fmt.Errorf("runtime log: record %d at byte %d: truncated", rec, start)
		}
		es := int(binary.LittleEndian.Uint32(l[p:]))
		p += 4
		if es < 0 || p+es > len(l) {
			return fmt.Errorf("runtime log: record %d at byte %d: truncated event", rec, start)
		}
		ev := l[p : p+es]
		p += es
		if rec != idx {
			continue
		}
		last := len(ev) - 1 // the last hex digit of "mr_ima extend sha384/HEX"
		if last < 8 {
			return fmt.Errorf("runtime log: record %d is too short", rec)
		}
		if ev[last] == '0' {
			ev[last] = '1'
		} else {
			ev[last] = '0'
		}
		how := ""
		if rehash {
			for _, s := range slots {
				var d []byte
				switch s.alg {
				case 0x0004:
					x := sha1.Sum(ev)
					d = x[:]
				case 0x000b:
					x := sha256.Sum256(ev)
					d = x[:]
				case 0x000c:
					x := sha512.Sum384(ev)
					d = x[:]
				case 0x000d:
					x := sha512.Sum512(ev)
					d = x[:]
				}
				copy(l[s.at:], d)
			}
			how = ", digests recomputed"
		}
		fmt.Printf("tampered runtime log record %d (at byte %d%s): now %q\n", rec, start, how, ev[8:])
		return nil
	}
	return fmt.Errorf("runtime log has no record %d", idx)
}

func tamperLog(in, out, format string, f func([]byte) error) error {
	b, err := readBundle(in)
	if err != nil {
		return err
	}
	ls, data, err := b.logs()
	if err != nil {
		return err
	}
	for i, l := range ls {
		if l["format"] != format {
			continue
		}
		if err := f(data[i]); err != nil {
			return err
		}
		l["data"] = base64Encode(data[i])
		return b.write(out)
	}
	return fmt.Errorf("%s: no %s log", in, format)
}

func tamperNonce(in, out string) error {
	b, err := readBundle(in)
	if err != nil {
		return err
	}
	s, _ := b["nonce"].(string)
	n, err := base64Decode(s)
	if err != nil || len(n) == 0 {
		return fmt.Errorf("%s: nonce: %v", in, err)
	}
	n[0] ^= 0x01
	b["nonce"] = base64Encode(n)
	return b.write(out)
}

// ---- the policy ----

func policyCmd(args []string) error {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	bundlePath := fs.String("bundle", "", "evidence bundle")
	manifest := fs.String("manifest", "", "sha256sum-style manifest of the initramfs (paths relative to its root)")
	sysfs := fs.String("sysfs-pcrs", "", "the guest's sysfs PCR values, lines `BANK INDEX HEX`")
	forwarded := fs.Int("forwarded", -1, "number of IMA entries forwarded to mr_ima")
	out := fs.String("o", "", "output policy file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bundlePath == "" || *manifest == "" || *sysfs == "" || *forwarded < 0 || *out == "" {
		return errors.New("policy: -bundle, -manifest, -sysfs-pcrs, -forwarded and -o are required")
	}
	b, err := readBundle(*bundlePath)
	if err != nil {
		return err
	}
	digests := map[string][]string{}
	mf, err := os.Open(*manifest)
	if err != nil {
		return err
	}
	defer mf.Close()
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		p := "/" + strings.TrimPrefix(strings.TrimPrefix(f[1], "./"), "/")
		digests[p] = append(digests[p], f[0])
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// boot_aggregate with a sha256 bank: sha256 over PCR 0..9 of that bank
	// (the kernel's ima_calc_boot_aggregate; PCRs 8 and 9 count for every
	// bank but sha1), from the quoted values.
	pcrs, err := b.quotedPCRs("sha256")
	if err != nil {
		return err
	}
	h := sha256.New()
	for i := 0; i <= 9; i++ {
		v, ok := pcrs[i]
		if !ok {
			return fmt.Errorf("quote lacks sha256 PCR %d", i)
		}
		h.Write(v)
	}
	digests["boot_aggregate"] = []string{hex.EncodeToString(h.Sum(nil))}

	regs := map[string]string{}
	sf, err := os.ReadFile(*sysfs)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(sf), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "10" {
			// PCR 10 as the guest kernel reported it in sysfs just before
			// the quote (bank sha256 only: one value per register name).
			if f[0] == "sha256" {
				regs["pcr10"] = "sha256:" + strings.ToLower(f[2])
			}
		}
	}
	if regs["pcr10"] == "" {
		return fmt.Errorf("%s: no sha256 PCR 10", *sysfs)
	}
	list, err := b.logData("ima-binary")
	if err != nil {
		return err
	}
	v, err := mrIMA(list, *forwarded)
	if err != nil {
		return err
	}
	regs["mr_ima"] = fmt.Sprintf("sha384:%x", v)

	for _, ds := range digests {
		sort.Strings(ds)
	}
	pol := map[string]any{
		"registers": regs,
		"ima": map[string]any{"keylime": map[string]any{
			"meta":     map[string]any{"version": 1, "generator": 0}, // Keylime: an integer, 0 is Unknown
			"release":  0,
			"digests":  digests,
			"excludes": []string{},
			// Keylime's schema requires every member (ccmr too).
			"keyrings":          map[string][]string{},
			"ima":               map[string]any{"ignored_keyrings": []string{}, "log_hash_alg": "sha1", "dm_policy": nil},
			"ima-buf":           map[string][]string{},
			"verification-keys": "",
		}},
	}
	o, err := json.MarshalIndent(pol, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(*out, append(o, '\n'), 0o644)
}

// ---- checking verify reports ----

type report struct {
	Trusted *bool `json:"trusted"`
	Layers  []struct {
		Layer   int    `json:"layer"`
		Name    string `json:"name"`
		Status  string `json:"status"`
		Failure *struct {
			Log    string `json:"log"`
			Record int    `json:"record"`
			Offset int64  `json:"offset"`
			Reason string `json:"reason"`
		} `json:"failure"`
	} `json:"layers"`
}

func expect(cmd string, a []string) error {
	if len(a) < 1 {
		return fmt.Errorf("usage: %s REPORT [LAYER [RECORD]]", cmd)
	}
	raw, err := os.ReadFile(a[0])
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s: %w", a[0], err)
	}
	if r.Trusted == nil || len(r.Layers) != 5 {
		return fmt.Errorf("%s: not a verify report with five layers", a[0])
	}
	if cmd == "expect-pass" {
		for _, l := range r.Layers {
			if l.Status != "pass" {
				return fmt.Errorf("layer %d (%s) is %s, want pass", l.Layer, l.Name, l.Status)
			}
		}
		if !*r.Trusted {
			return errors.New("report says not trusted")
		}
		fmt.Println("all five layers pass, trusted")
		return nil
	}
	if len(a) < 2 {
		return errors.New("expect-fail: LAYER is required")
	}
	want, err := strconv.Atoi(a[1])
	if err != nil {
		return err
	}
	if *r.Trusted {
		return errors.New("report says trusted, want not trusted")
	}
	for _, l := range r.Layers {
		switch {
		case l.Layer < want && l.Status != "pass":
			return fmt.Errorf("layer %d (%s) is %s, want pass before layer %d", l.Layer, l.Name, l.Status, want)
		case l.Layer == want && l.Status != "fail":
			return fmt.Errorf("layer %d (%s) is %s, want fail", l.Layer, l.Name, l.Status)
		case l.Layer > want && l.Status != "skip":
			return fmt.Errorf("layer %d (%s) is %s, want skip after the failure", l.Layer, l.Name, l.Status)
		}
	}
	f := r.Layers[want].Failure
	if f == nil {
		return fmt.Errorf("layer %d failed without a failure record", want)
	}
	if len(a) > 2 {
		rec, err := strconv.Atoi(a[2])
		if err != nil {
			return err
		}
		if f.Record != rec {
			return fmt.Errorf("layer %d failed at record %d, want record %d (%s)", want, f.Record, rec, f.Reason)
		}
	}
	fmt.Printf("layer %d (%s) fails as it must: %s", want, r.Layers[want].Name, f.Reason)
	if f.Log != "" {
		fmt.Printf(" [%s record %d byte %d]", f.Log, f.Record, f.Offset)
	}
	fmt.Println()
	return nil
}

// base64Decode and base64Encode use the encoding Go's encoding/json gives
// []byte fields (standard, padded).
func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func base64Encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
