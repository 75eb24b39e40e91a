package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"

	"github.com/plantedge/plantedge/internal/certtest"
	"github.com/plantedge/plantedge/internal/nettest"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
)

const childEnv = "PLANTEDGE_MQTT_CHILD_URL"

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		os.Exit(childMain(url))
	}
	goleak.VerifyTestMain(m)
}

// childMain runs a connector that reports every sample on stdout and never
// acks, until the parent kills it.
func childMain(url string) int {
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	sink := connectors.SinkFunc(func(_ context.Context, s connectors.Sample) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "GOT %s %s\n", s.Address, s.Payload)
		return out.Flush()
	})
	src, err := New(Config{Name: "child", URL: url, ClientID: "child-session", Topics: []string{"crash/#"}}, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := src.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// chanSink collects samples in a channel.
type chanSink chan connectors.Sample

func (c chanSink) Deliver(ctx context.Context, s connectors.Sample) error {
	select {
	case c <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c chanSink) next(t testing.TB) connectors.Sample {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for a sample")
		return connectors.Sample{}
	}
}

// none checks that no sample arrives within d.
func (c chanSink) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case s := <-c:
		t.Fatalf("unexpected sample %s %q", s.Address, s.Payload)
	case <-time.After(d):
	}
}

// running is a Source started by start; stop cancels it and waits.
type running struct {
	*Source
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, valid after done
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("run: %v", r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func start(t testing.TB, cfg Config, sink connectors.Sink) *running {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "broker"
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 20 * time.Millisecond
		cfg.BackoffMax = 200 * time.Millisecond
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	if testing.Verbose() && cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	src, err := New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Source: src, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = src.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitConnected(t testing.TB, r *running, connects uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("connect #%d", connects), func() bool {
		return r.State() == connectors.StateConnected && r.Stats().Connects >= connects
	})
}

// publisher is a plain paho client publishing QoS 1 messages.
type publisher struct{ c paho.Client }

func newPublisher(t testing.TB, url string, tlsCfg *tls.Config) *publisher {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second)
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &publisher{c: c}
}

func (p *publisher) pub(t testing.TB, topic string, payload []byte) {
	t.Helper()
	tok := p.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// pubAsync publishes without waiting; wait for the returned tokens.
func (p *publisher) pubAsync(topic string, payload []byte) paho.Token {
	return p.c.Publish(topic, 1, false, payload)
}

// freePort is a port for a server started later, or again on the same port:
// one a port-0 bind cannot take meanwhile (nettest.FreePort).
func freePort(t testing.TB) int { return nettest.FreePort(t) }

// startMochi runs an in-memory mochi broker on 127.0.0.1 and returns its URL.
// kind is "tcp", "tls" (needs tlsCfg) or "ws".
func startMochi(t testing.TB, kind string, tlsCfg *tls.Config, caps func(*mochi.Capabilities)) string {
	t.Helper()
	return startMochiHook(t, kind, tlsCfg, caps, new(allowHook))
}

// startMochiHook is startMochi with hook deciding who may connect and
// read or write what.
func startMochiHook(t testing.TB, kind string, tlsCfg *tls.Config, caps func(*mochi.Capabilities), hook mochi.Hook) string {
	t.Helper()
	opts := &mochi.Options{Logger: slog.New(slog.DiscardHandler)}
	if caps != nil {
		opts.Capabilities = mochi.NewDefaultServerCapabilities()
		caps(opts.Capabilities)
	}
	srv := mochi.New(opts)
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	var url string
	var raw *countingListener // the tcp and tls kinds' own
	switch kind {
	case "tcp", "tls":
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		raw = &countingListener{Listener: tl}
		var l net.Listener = raw
		url = "tcp://" + l.Addr().String()
		if kind == "tls" {
			l = tls.NewListener(l, tlsCfg)
			url = "ssl://" + l.Addr().String()
		}
		if err := srv.AddListener(listeners.NewNet(kind, l)); err != nil {
			t.Fatal(err)
		}
	case "ws":
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if err := srv.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: addr})); err != nil {
			t.Fatal(err)
		}
		url = "ws://" + addr
	default:
		t.Fatalf("unknown listener %q", kind)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if raw != nil {
			// mochi v2.7.9's Close races with a connection its listener
			// accepted just before (attachClient's ClientsWg.Add against
			// Close's Wait: CI's -race caught it, a client of a wrong CA
			// reconnecting in TestMochiTLS, and again in TestMochiMQTTSchemes
			// under load, past the 50 ms this waited): no more accepts, and
			// every connection accepted read from (attachClient has added
			// it by then).
			_ = raw.Close()
			waitFor(t, "mochi reading every connection it accepted", raw.allRead)
		}
		_ = mqtttest.CloseMochi(srv)
	})
	if kind == "ws" {
		waitFor(t, "websocket listener", func() bool {
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "ws://"))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return url
}

// countingListener counts the connections it accepts and those read from
// since (mochi's attachClient reads a connection once it has added it to
// the clients its Close waits for).
type countingListener struct {
	net.Listener
	accepted, read atomic.Int64
	ended          atomic.Bool // an Accept failed: mochi's accept loop is over
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		l.ended.Store(true)
		return nil, err
	}
	l.accepted.Add(1)
	return &firstReadConn{Conn: c, l: l}, nil
}

// allRead reports, once closed, whether mochi's accept loop is over (one
// Accept, a connection's, may return after Close) and every connection
// accepted has been read from.
func (l *countingListener) allRead() bool {
	return l.ended.Load() && l.read.Load() == l.accepted.Load()
}

// firstReadConn counts its first Read in its listener's read.
type firstReadConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *firstReadConn) Read(p []byte) (int, error) {
	c.once.Do(func() { c.l.read.Add(1) })
	return c.Conn.Read(p)
}

// mosquitto is a real Mosquitto broker run by the test on a loopback port.
type mosquitto struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// newMosquitto writes a config (extra lines appended) and starts the broker.
// It skips when the binary is missing, unless CI is set.
func newMosquitto(t testing.TB, extra ...string) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto not installed (CI is set): apt-get install -y mosquitto")
		}
		t.Skip("mosquitto not installed: apt-get install -y mosquitto (required when CI is set)")
	}
	m := &mosquitto{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", m.port),
		"allow_anonymous true",
		"persistence false",
		"max_queued_messages 1000",
		"max_inflight_messages 20",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
	}
	if os.Geteuid() == 0 {
		lines = append(lines, "user root") // don't drop to a user that can't read the temp dir
	}
	lines = append(lines, extra...)
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(m.kill)
	return m
}

func (m *mosquitto) url(scheme string) string {
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, m.port)
}

func (m *mosquitto) start() {
	m.t.Helper()
	log, err := os.OpenFile(filepath.Join(m.dir, "mosquitto.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}(m.cmd, m.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-m.done:
			b, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
			m.t.Fatalf("mosquitto exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto not listening on %d: %v", m.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the broker with SIGKILL and waits for it.
func (m *mosquitto) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

// testPKI is a CA with a server certificate for 127.0.0.1/localhost, as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	serverCert                tls.Certificate
}

func newPKI(t testing.TB, dir, name string) *testPKI {
	t.Helper()
	ca := certtest.NewCA(t, name+" test CA", certtest.Days(1))
	p := &testPKI{
		caFile:     filepath.Join(dir, name+"-ca.pem"),
		certFile:   filepath.Join(dir, name+"-server.pem"),
		keyFile:    filepath.Join(dir, name+"-server.key"),
		pool:       ca.Pool(),
		serverCert: ca.Issue(t, "localhost", certtest.Days(1)),
	}
	certtest.WriteCerts(t, p.caFile, ca.Cert)
	certtest.WritePair(t, p.serverCert, p.certFile, p.keyFile)
	return p
}

// lineReader reads the child's stdout lines into a channel.
func lineReader(r io.Reader) <-chan string {
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// allowHook lets every client connect and use every topic (mochi's own
// auth.AllowHook package pulls in yaml.v3, which go.mod does not carry).
type allowHook struct{ mochi.HookBase }

func (h *allowHook) ID() string { return "allow-all" }

func (h *allowHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *allowHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// ackHook is allowHook that also counts, per client id, the QoS 1 flows
// completed with that client: the PUBACKs it sent for the messages the
// broker delivered to it (and the broker's own PUBACKs to its publishes).
type ackHook struct {
	allowHook
	mu   sync.Mutex
	acks map[string]int
}

func (h *ackHook) ID() string { return "ack-count" }

func (h *ackHook) Provides(b byte) bool {
	return h.allowHook.Provides(b) || b == mochi.OnQosComplete
}

func (h *ackHook) OnQosComplete(cl *mochi.Client, _ packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.acks == nil {
		h.acks = map[string]int{}
	}
	h.acks[cl.ID]++
}

// waitAcked waits until the broker has read n PUBACKs from client id: a
// connector stopped then leaves nothing acknowledged for the broker to
// send again.
func (h *ackHook) waitAcked(t testing.TB, id string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d PUBACKs from %s at the broker", n, id), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.acks[id] >= n
	})
}

// routedHook is allowHook that also counts, per topic, the QoS 1 messages
// the broker has routed to their subscribers' sessions. mochi answers a
// publisher's PUBACK before it routes the message (mosquitto after): a
// subscriber's connect that takes its session over in between copies the
// session without the message, and mochi routes it to the connection
// taken over, where it is lost (docs/runbook.md, MQTT brokers and order).
type routedHook struct {
	allowHook
	mu     sync.Mutex
	routed map[string]int
}

func (h *routedHook) ID() string { return "routed-count" }

func (h *routedHook) Provides(b byte) bool {
	return h.allowHook.Provides(b) || b == mochi.OnPublished
}

func (h *routedHook) OnPublished(_ *mochi.Client, pk packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.routed == nil {
		h.routed = map[string]int{}
	}
	h.routed[pk.TopicName]++
}

// waitRouted waits until the broker has routed n messages published on
// topic to the sessions subscribed to it.
func (h *routedHook) waitRouted(t testing.TB, topic string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages on %s routed by the broker", n, topic), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.routed[topic] >= n
	})
}

// aclHook is allowHook but for the topics in deny, which no client may
// subscribe to (mochi then answers SUBACK 0x80, as an ACL does).
type aclHook struct {
	allowHook
	mu   sync.Mutex
	deny map[string]bool
}

func (h *aclHook) ID() string { return "acl" }

func (h *aclHook) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return write || !h.deny[topic]
}

func (h *aclHook) allow(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.deny, topic)
}
