package tpmverify

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
)

// NumPCRs is the number of PCRs per bank ccmr exposes (PC Client profile).
const NumPCRs = 24

// ParsePCRName returns the index of "pcr0".."pcr23".
func ParsePCRName(name string) (int, error) {
	s, ok := strings.CutPrefix(name, "pcr")
	if ok && s != "" && (s == "0" || s[0] != '0') && len(s) <= 2 {
		if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < NumPCRs {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (a TPM has pcr0..pcr23)", mr.ErrUnknownRegister, name)
}
