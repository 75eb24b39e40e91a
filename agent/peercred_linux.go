package agent

import (
	"net"

	"golang.org/x/sys/unix"
)

// unixPeerUID returns the uid of the process at the other end of a unix
// socket connection (SO_PEERCRED), as the kernel recorded it at connect.
func unixPeerUID(c *net.UnixConn) (int, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil || err != nil {
		return 0, false
	}
	return int(cred.Uid), true
}
