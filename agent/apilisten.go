package agent

import (
	"io"
	"net"
	"sync"
	"time"
)

// The local API's connections are bounded (file descriptors are the
// buffer's and the sources' too), and shared fairly: at most maxAPIConns
// are open at once — more wait to be accepted — and a host other than
// this one gets at most maxAPIConnsPerHost of them, so a plant host that
// opens connections and keeps them (listen opened for Prometheus) cannot
// take the slots of plantedge status and flush on the box. (The self-probe
// held all 32 slots of the first version from one host: status said the
// agent was not answering.) Connections from this machine share its
// address; the unix socket is the agent user's alone.
const (
	maxAPIConns        = 256
	maxAPIConnsPerHost = 32
)

// overShare is the answer to a connection over its host's share.
const overShare = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
	overShareLen + "\r\n\r\n" + overShareBody

const (
	overShareBody = "too many connections from this host to the plantedge API: close some\n"
	overShareLen  = "69" // len(overShareBody), checked by TestAPIListenerSharesConnectionsFairly
)

// apiListener is a net.Listener with those bounds.
type apiListener struct {
	net.Listener
	slots  chan struct{}
	hostOf func(net.Conn) string // remoteHost; tests
	mu     sync.Mutex
	hosts  map[string]int
}

func limitAPI(ln net.Listener) net.Listener {
	return &apiListener{Listener: ln, slots: make(chan struct{}, maxAPIConns), hostOf: remoteHost, hosts: map[string]int{}}
}

func (l *apiListener) Accept() (net.Conn, error) {
	for {
		l.slots <- struct{}{}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		host := l.hostOf(c)
		l.mu.Lock()
		if host != "" && l.hosts[host] >= maxAPIConnsPerHost {
			l.mu.Unlock()
			// That host has its share: say so (a bare reset tells a
			// scraper nothing), without waiting on it.
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.WriteString(c, overShare)
			_ = c.Close()
			<-l.slots
			continue
		}
		if host != "" {
			l.hosts[host]++
		}
		l.mu.Unlock()
		return &apiConn{Conn: c, l: l, host: host}, nil
	}
}

// remoteHost is the peer's address when it is another host ("" for this
// machine: loopback, the unix socket).
func remoteHost(c net.Conn) string {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || a.IP.IsLoopback() {
		return ""
	}
	return a.IP.String()
}

type apiConn struct {
	net.Conn
	l    *apiListener
	host string
	once sync.Once
}

func (c *apiConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.host != "" {
			c.l.mu.Lock()
			if c.l.hosts[c.host]--; c.l.hosts[c.host] <= 0 {
				delete(c.l.hosts, c.host)
			}
			c.l.mu.Unlock()
		}
		<-c.l.slots
	})
	return err
}
