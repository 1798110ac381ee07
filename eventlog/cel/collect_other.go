//go:build !unix

package cel

import (
	"fmt"
	"os"

	"github.com/ccmr-dev/ccmr/mr"
)

// openLog refuses: systemd's log is collected on a Linux guest, and this
// system cannot open it without following links.
func openLog(path string) (*os.File, error) {
	return nil, fmt.Errorf("%s: %w: systemd's log is collected on Linux", path, mr.ErrUnsupported)
}
