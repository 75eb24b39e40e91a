package opcua

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// keptSession is what closes a session from another process (see
// SessionKeeper): the session's authentication token and the server nonce
// and certificate its activation is signed with, and the server, security
// and user it was made with — a source pointed elsewhere, or with other
// security or another user, does not try it.
type keptSession struct {
	Server     string `json:"server"`
	Policy     string `json:"policy"`
	Mode       string `json:"mode"`
	User       string `json:"user,omitempty"`
	Token      []byte `json:"token"` // binary-encoded node id
	Nonce      []byte `json:"nonce,omitempty"`
	ServerCert []byte `json:"server_cert,omitempty"`
	// LifetimeMS is the session's lifetime, as the server revised it
	// (milliseconds; 0 in what an earlier version kept).
	LifetimeMS float64 `json:"lifetime_ms,omitempty"`
	// Sub is the session's subscription, once it has one (0: none, or
	// kept by an earlier version), its publishing interval (ms) and
	// lifetime count as the server revised them, and Nodes the sum of the
	// nodes its monitored items' client handles stand for (nodesSum): the
	// next run takes the changes it holds (drainOrphan) when its nodes
	// are the same.
	Sub         uint32  `json:"sub,omitempty"`
	SubInterval float64 `json:"sub_interval_ms,omitempty"`
	SubLifetime uint32  `json:"sub_lifetime,omitempty"`
	Nodes       string  `json:"nodes,omitempty"`
}

// nodesSum stands for s's nodes, in order: a monitored item's client
// handle is its node's index + 1, so a subscription kept by a run with
// other nodes (the configuration changed while the agent was down) means
// other nodes by the same handles.
func (s *Source) nodesSum() string {
	h := sha256.New()
	for _, n := range s.nodes {
		h.Write([]byte(n.addr))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// drainSub is the subscription of k to take the changes of (drainOrphan)
// for a source whose nodes sum to nodes: nil when k has none, or it was
// made for other nodes. republish: what the server sent the killed run
// is asked again (see DeliveredTimes).
func (k *keptSession) drainSub(nodes string, republish bool) *orphanSub {
	if k == nil || k.Sub == 0 || k.Nodes != nodes {
		return nil
	}
	return &orphanSub{id: k.Sub, interval: time.Duration(k.SubInterval * float64(time.Millisecond)), lifetime: k.SubLifetime,
		kept: true, noRepublish: !republish}
}

// lifetime is how long after its last request the server keeps the
// session; asked, when it does not say.
func (k *keptSession) lifetime(asked time.Duration) time.Duration {
	if k.LifetimeMS > 0 {
		return time.Duration(k.LifetimeMS * float64(time.Millisecond))
	}
	return asked
}

// KeptLifetime is the lifetime the server gave the session kept in b
// (SessionKeeper), said as "2 minutes" or "10s"; "" when not known: kept
// by an earlier version, by a server that answered 0 (gopcua's), or b not
// a kept session.
func KeptLifetime(b []byte) string {
	var k keptSession
	if json.Unmarshal(b, &k) != nil || k.LifetimeMS <= 0 {
		return ""
	}
	return fmtDuration(k.lifetime(0))
}

// keptFor is the identity part of a keptSession for s.
func (s *Source) keptFor() keptSession {
	return keptSession{Server: s.server, Policy: s.sec.policyURI, Mode: s.sec.mode.String(), User: s.cfg.Username}
}

func (k keptSession) sameOwner(o keptSession) bool {
	return k.Server == o.Server && k.Policy == o.Policy && k.Mode == o.Mode && k.User == o.User
}

// keepSession keeps what closes sess, the session just activated
// (cfg.Sessions), and sub, its subscription once made (nil before): once
// per subscription, not per value. Not kept, a kill leaves it for its
// lifetime, as before.
func (s *Source) keepSession(sess *opcua.Session, sub *orphanSub) {
	if s.cfg.Sessions == nil || sess == nil {
		return
	}
	k := s.keptFor()
	tok, nonce, cert, ok := sessionSecrets(sess)
	if resp := unexported[*ua.CreateSessionResponse](sess, "resp"); ok && resp != nil && *resp != nil {
		k.LifetimeMS = (*resp).RevisedSessionTimeout
	}
	if !ok {
		s.log.Debug("the session is not kept for the next process to close: this gopcua keeps it otherwise")
		return
	}
	var err error
	if k.Token, err = tok.Encode(); err != nil {
		return
	}
	k.Nonce, k.ServerCert = nonce, cert
	if sub != nil {
		k.Sub, k.SubInterval, k.SubLifetime = sub.id, float64(sub.interval)/float64(time.Millisecond), sub.lifetime
		k.Nodes = s.nodesSum()
	}
	b, err := json.Marshal(k)
	if err == nil {
		err = s.cfg.Sessions.KeepSession(b)
	}
	if err != nil {
		s.log.Debug("the session is not kept for the next process to close", "err", err)
	}
}

// forgetSession forgets the kept session: it was closed.
func (s *Source) forgetSession() {
	if s.cfg.Sessions == nil {
		return
	}
	if err := s.cfg.Sessions.KeepSession(nil); err != nil {
		s.log.Debug("the closed session is still kept; the next start tries to close it", "err", err)
	}
}

// leftByLast is the session the previous process kept for this source,
// if it was made with this source's server, security and user; nil if
// none. One kept for another is forgotten.
func (s *Source) leftByLast() *keptSession {
	if s.cfg.Sessions == nil {
		return nil
	}
	b, err := s.cfg.Sessions.KeptSession()
	if err != nil || b == nil {
		return nil
	}
	var k keptSession
	if json.Unmarshal(b, &k) != nil || !k.sameOwner(s.keptFor()) || len(k.Token) == 0 {
		s.forgetSession()
		return nil
	}
	return &k
}

// session makes k an opcua.Session again, to be activated by c (whose
// session settings — the user's credentials among them — it takes): nil
// if it cannot.
func (k *keptSession) session(c *opcua.Client) *opcua.Session {
	tok := new(ua.NodeID)
	if _, err := tok.Decode(k.Token); err != nil {
		return nil
	}
	cfg := unexported[*opcua.Config](c, "cfg")
	if cfg == nil || *cfg == nil {
		return nil
	}
	sc := unexported[*uasc.SessionConfig](*cfg, "session")
	if sc == nil || *sc == nil {
		return nil
	}
	sess := new(opcua.Session)
	scf := unexported[*uasc.SessionConfig](sess, "cfg")
	resp := unexported[*ua.CreateSessionResponse](sess, "resp")
	nonce := unexported[[]byte](sess, "serverNonce")
	cert := unexported[[]byte](sess, "serverCertificate")
	if scf == nil || resp == nil || nonce == nil || cert == nil {
		return nil
	}
	*scf, *resp, *nonce, *cert = *sc, &ua.CreateSessionResponse{AuthenticationToken: tok}, k.Nonce, k.ServerCert
	return sess
}

// sessionSecrets reads what activates sess again: gopcua keeps it
// unexported (its own reconnect reuses it in place), so it is read by
// reflection; ok is false when this gopcua does not have it so.
func sessionSecrets(sess *opcua.Session) (tok *ua.NodeID, nonce, cert []byte, ok bool) {
	resp := unexported[*ua.CreateSessionResponse](sess, "resp")
	n := unexported[[]byte](sess, "serverNonce")
	c := unexported[[]byte](sess, "serverCertificate")
	if resp == nil || *resp == nil || (*resp).AuthenticationToken == nil || n == nil || c == nil {
		return nil, nil, nil, false
	}
	return (*resp).AuthenticationToken, *n, *c, true
}

// ClosesKept reports whether b, a session kept (SessionKeeper) for another
// source — one renamed or removed from the configuration since — was made
// with this source's server, security and user: kept for this source
// instead, its start would close it (the credentials and the client
// certificate that activate it again are this source's).
func (s *Source) ClosesKept(b []byte) bool {
	var k keptSession
	return json.Unmarshal(b, &k) == nil && len(k.Token) > 0 && k.sameOwner(s.keptFor())
}

// dropLeft forgets the session the previous run left (closed, gone, or
// past its lifetime): the key too while it holds that one.
func (s *Source) dropLeft() {
	s.left = nil
	if s.leftKept {
		s.leftKept = false
		s.forgetSession()
	}
}

// leftGone notes what closeOrphan did with the session the previous run
// left: closed, or gone from the server.
func (s *Source) leftGone(gone int32) {
	if gone == orphanClosed {
		s.log.Info("closed the session the previous run left on the server when it ended uncleanly (killed, crashed)")
		s.update(func(st *Stats) { st.LeftSessionsClosed++ })
	} else {
		s.log.Debug("the session the previous run left is gone from the server (restarted, or it dropped it)")
	}
	s.dropLeft()
}

// retryLeft tries once more to close the session the previous run left,
// which the start of the connection just made could not close (the
// server did not answer in time): with that connection's options, for
// stopWait at most. Not closed, it is tried again at the next connection,
// until its lifetime since this start has passed.
func (s *Source) retryLeft(ctx context.Context) {
	opts := s.opts.Load()
	if s.left == nil || opts == nil {
		return
	}
	p := clientParams{endpoint: s.cfg.Endpoint, requestTimeout: s.cfg.RequestTimeout, left: s.left}
	s.orphanMu.Lock()
	gone, err := closeOrphan(ctx, p, *opts)
	s.orphanMu.Unlock()
	if gone == orphanClosed || gone == orphanUnknown {
		s.leftGone(gone)
		return
	}
	s.log.Debug("the session the previous run left is not closed yet: tried again at the next connection, until its lifetime since this start has passed",
		"lifetime", s.left.lifetime(s.sessionTimeout()), "err", err)
}
