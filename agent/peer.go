package agent

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Dropping dead letters loses what they hold for good: over TCP (where
// any local user reaches the API on loopback) it is taken only from root,
// the agent's own user, or a member of the agent's group (plantedge, for
// the packaged unit). The unix socket is guarded by its file mode.

// errPeerUnknown: the user behind a loopback connection was not found.
var errPeerUnknown = errors.New("the user behind the connection was not found")

// peerUID returns the uid of the local process's socket at the other end
// of a TCP connection to this agent: the owner of the socket whose local
// address is remote and whose peer is local, as /proc/net/tcp{,6} lists it.
func peerUID(remote, local string) (int, error) {
	ra, err := net.ResolveTCPAddr("tcp", remote)
	if err != nil {
		return 0, err
	}
	la, err := net.ResolveTCPAddr("tcp", local)
	if err != nil {
		return 0, err
	}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		uid, err := findSocketUID(f, procAddrs(ra), procAddrs(la))
		if err == nil {
			return uid, nil
		}
		if !errors.Is(err, errPeerUnknown) {
			return 0, err
		}
	}
	return 0, errPeerUnknown
}

// findSocketUID scans one /proc/net/tcp file for a socket whose local
// address is one of locals and whose remote one is one of remotes.
func findSocketUID(path string, locals, remotes []string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, errPeerUnknown
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || !slices.Contains(locals, fs[1]) || !slices.Contains(remotes, fs[2]) {
			continue
		}
		return strconv.Atoi(fs[7])
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errPeerUnknown
}

// procAddrs writes a TCP address as /proc/net/tcp (IPv4) and tcp6 list it:
// the address in 32-bit words of host (little-endian) order, then the port,
// in upper-case hex. An IPv4 address is also given in its IPv6-mapped form
// (a socket on [::] takes IPv4 connections as those).
func procAddrs(a *net.TCPAddr) []string {
	port := fmt.Sprintf("%04X", a.Port)
	words := func(ip net.IP) string {
		b := slices.Clone(ip)
		for i := 0; i+4 <= len(b); i += 4 {
			slices.Reverse(b[i : i+4])
		}
		return strings.ToUpper(hex.EncodeToString(b))
	}
	var out []string
	if v4 := a.IP.To4(); v4 != nil {
		out = append(out, words(v4)+":"+port)
	}
	if v6 := a.IP.To16(); v6 != nil {
		out = append(out, words(v6)+":"+port)
	}
	return out
}

// mayDrop reports whether the user uid may drop dead letters: root, the
// agent's user, or a member of the agent's group.
func mayDrop(uid int) bool {
	if uid == 0 || uid == os.Geteuid() {
		return true
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	return slices.Contains(gids, strconv.Itoa(os.Getegid()))
}

// peerUIDKey holds, in a request's context, the uid of the process at the
// other end of a unix socket connection (see connContext).
type peerUIDKey struct{}

// connContext notes the peer's uid of a unix socket connection in its
// requests' context (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if ac, ok := c.(*apiConn); ok {
		c = ac.Conn
	}
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, ok := unixPeerUID(uc); ok {
			return context.WithValue(ctx, peerUIDKey{}, uid)
		}
	}
	return ctx
}

// peer is the local user who sent a request: the unix socket's peer
// credentials (connContext), or the user behind a loopback TCP connection.
type peer struct {
	uid int
	tcp bool
	err error // not found
}

// peerOf finds who sent r (once per request: over TCP it reads
// /proc/net/tcp).
func peerOf(r *http.Request) peer {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		uid, err := peerUID(r.RemoteAddr, la.String())
		return peer{uid: uid, tcp: true, err: err}
	}
	if uid, ok := r.Context().Value(peerUIDKey{}).(int); ok {
		return peer{uid: uid}
	}
	return peer{err: errPeerUnknown}
}

// String names the user for the log of what a request changed: "uid 1000
// (alice)", or "unknown" when it cannot be told.
func (p peer) String() string {
	if p.err != nil {
		return "unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(p.uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", p.uid, u.Username)
	}
	return fmt.Sprintf("uid %d", p.uid)
}

// dropRefused returns why a request to drop dead letters over TCP is
// refused, or "" when its user may (the unix socket: its file mode decides).
func (p peer) dropRefused() string {
	return p.refused("dropping dead letters loses what they hold", "plantedge deadletter drop")
}

// refused is why p may not do what what says (by command cmd), or "".
func (p peer) refused(what, cmd string) string {
	if !p.tcp {
		return ""
	}
	if p.err != nil {
		return fmt.Sprintf("%s: the agent could not tell which user asks (%v); run %s as root (sudo)", what, p.err, cmd)
	}
	if !mayDrop(p.uid) {
		group := strconv.Itoa(os.Getegid())
		if g, err := user.LookupGroupId(group); err == nil {
			group = g.Name
		}
		return fmt.Sprintf("%s: only root, the agent's user or a member of its group %s may (uid %d asked); run it with sudo", what, group, p.uid)
	}
	return ""
}
