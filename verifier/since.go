package verifier

import (
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/tail"
)

// The since file's types live in bundle/tail, beside the bundle, so a guest
// that cuts its logs to tails does not link the verifier; these names stay
// for the verifier's callers.
type (
	// Since is tail.Since: how far a monitor state verified one machine's logs.
	Since = tail.Since
	// SinceRuntime is tail.SinceRuntime.
	SinceRuntime = tail.SinceRuntime
	// SinceIMA is tail.SinceIMA.
	SinceIMA = tail.SinceIMA
)

// SinceFormat is tail.SinceFormat, the since file's format.
const SinceFormat = tail.SinceFormat

// Since returns how far the state verified a machine's logs; ok is false
// when it holds no entry for the machine.
func (m *MonitorState) Since(machine string) (s *Since, ok bool) {
	e := m.Machines[machine]
	if e == nil {
		return nil, false
	}
	s = &Since{Format: SinceFormat, Machine: machine}
	for _, rs := range e.Runtime {
		s.Runtime = append(s.Runtime, SinceRuntime{Register: rs.Register, SegmentInit: rs.SegmentInit, Offset: rs.Offset, Value: rs.Value})
	}
	if e.IMA != nil {
		s.IMA = &SinceIMA{Offset: e.IMA.Offset}
	}
	return s, true
}

// ParseSince is tail.ParseSince: a since file decoded strictly.
func ParseSince(b []byte) (*Since, error) { return tail.ParseSince(b) }

// TailLogs is tail.Logs: the logs cut to what a state with s has not seen.
func TailLogs(logs []bundle.Log, s *Since) ([]bundle.Log, error) { return tail.Logs(logs, s) }
