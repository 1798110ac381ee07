// Package backend opens a measurement-register device from a --device spec
// and, for "auto", finds the hardware a machine has.
package backend

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
)

// Spec is a parsed --device value: auto, sim[:DIR][?layout=tpm],
// tpm[:DEVICE|tcp://HOST:PORT|unix:PATH], tdx[:ROOT], snp[:ROOT]. A bare
// tcp://HOST:PORT, unix:PATH or /dev/... path means tpm.
type Spec struct {
	// Kind is auto, sim, tpm, tdx or snp.
	Kind string
	// Arg is what follows "KIND:": a folder, device path, address or root.
	Arg string
	// Options are the ?key=value options (sim: layout=tdx|tpm).
	Options url.Values
}

// ParseSpec parses a --device value.
func ParseSpec(s string) (Spec, error) {
	if s == "" {
		s = "auto"
	}
	switch {
	case strings.HasPrefix(s, "tcp://"), strings.HasPrefix(s, "unix:"), strings.HasPrefix(s, "/dev/"):
		return Spec{Kind: "tpm", Arg: s}, nil
	}
	kind, arg, _ := strings.Cut(s, ":")
	sp := Spec{Kind: kind, Arg: arg, Options: url.Values{}}
	if i := strings.LastIndex(arg, "?"); i >= 0 {
		q, err := url.ParseQuery(arg[i+1:])
		if err != nil {
			return Spec{}, fmt.Errorf("%w: device %q: options: %v", mr.ErrMalformed, s, err)
		}
		sp.Arg, sp.Options = arg[:i], q
	}
	if kind == "sim" && strings.HasPrefix(arg, "?") {
		sp.Arg = ""
	}
	switch kind {
	case "auto", "snp":
		if arg != "" && kind == "auto" {
			return Spec{}, fmt.Errorf("%w: device %q: auto takes no argument", mr.ErrMalformed, s)
		}
	case "sim", "tpm", "tdx":
	default:
		return Spec{}, fmt.Errorf("%w: device %q: kind %q (want auto, sim, tpm, tdx or snp)", mr.ErrUnsupported, s, kind)
	}
	for k := range sp.Options {
		if kind != "sim" || k != "layout" {
			return Spec{}, fmt.Errorf("%w: device %q: unknown option %q", mr.ErrUnsupported, s, k)
		}
	}
	return sp, nil
}

// String gives the spec back in --device form.
func (s Spec) String() string {
	out := s.Kind
	if s.Arg != "" {
		out += ":" + s.Arg
	}
	if len(s.Options) > 0 {
		out += "?" + s.Options.Encode()
	}
	return out
}
