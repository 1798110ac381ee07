//go:build unix

package vmr

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// statList returns the list's stat when it is a settled regular file.
func statList(f *os.File, now time.Time) *listStat {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	ls := &listStat{Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
	if now.UnixNano()-max(ls.Mtime, ls.Ctime) < int64(listSettle) {
		return nil
	}
	return ls
}
