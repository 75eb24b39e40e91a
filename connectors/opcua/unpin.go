package opcua

import (
	"bytes"
	"sync/atomic"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// unpin lets go the message chunks c's session holds. gopcua (v0.8.0)
// reads every chunk into a buffer of the size the server announced — 64
// KiB with many servers — and decodes a message of one chunk in place:
// its ByteStrings (nonces, certificates, signatures) and the GUIDs and
// ByteStrings of its node ids are slices of that buffer. The session keeps
// its CreateSession answer whole (its authentication token goes with every
// request) and the nonce of its ActivateSession answer, so each session
// held the two chunks they came in for its whole life (heap profiles of
// the many-PLCs benchmark). unpin makes c's session again from copies the
// size of what they hold and puts it in place of the one Connect made,
// unless that one is no longer c's session; the token, nonce, certificate
// and settings are the same values, so nothing else changes. Without
// gopcua's fields (another gopcua) c is left as it is.
func unpin(c *opcua.Client) {
	av := unexported[atomic.Value](c, "atomicSession")
	if av == nil {
		return
	}
	old, _ := av.Load().(*opcua.Session)
	if old == nil {
		return
	}
	if sess := unpinned(old); sess != nil {
		av.CompareAndSwap(old, sess)
	}
}

// unpinned is a copy of sess whose byte slices and node ids are copies of
// their own (see unpin), or nil when this gopcua keeps the session's
// answers otherwise.
func unpinned(sess *opcua.Session) *opcua.Session {
	out := new(opcua.Session)
	*out = *sess
	resp := unexported[*ua.CreateSessionResponse](out, "resp")
	nonce := unexported[[]byte](out, "serverNonce")
	cert := unexported[[]byte](out, "serverCertificate")
	if resp == nil || nonce == nil || cert == nil {
		return nil
	}
	if *resp != nil {
		r := **resp
		r.ResponseHeader = ownHeader(r.ResponseHeader)
		r.SessionID = ownNodeID(r.SessionID)
		r.AuthenticationToken = ownNodeID(r.AuthenticationToken)
		r.ServerNonce = own(r.ServerNonce)
		r.ServerCertificate = own(r.ServerCertificate)
		if r.ServerEndpoints != nil {
			eps := make([]*ua.EndpointDescription, len(r.ServerEndpoints))
			for i, e := range r.ServerEndpoints {
				if e != nil {
					ec := *e
					// Each endpoint carries the server's certificate,
					// mostly the one answered besides: shared.
					if bytes.Equal(ec.ServerCertificate, r.ServerCertificate) && ec.ServerCertificate != nil {
						ec.ServerCertificate = r.ServerCertificate
					} else {
						ec.ServerCertificate = own(ec.ServerCertificate)
					}
					e = &ec
				}
				eps[i] = e
			}
			r.ServerEndpoints = eps
		}
		if r.ServerSoftwareCertificates != nil {
			sw := make([]*ua.SignedSoftwareCertificate, len(r.ServerSoftwareCertificates))
			for i, c := range r.ServerSoftwareCertificates {
				if c != nil {
					c = &ua.SignedSoftwareCertificate{CertificateData: own(c.CertificateData), Signature: own(c.Signature)}
				}
				sw[i] = c
			}
			r.ServerSoftwareCertificates = sw
		}
		if r.ServerSignature != nil {
			r.ServerSignature = &ua.SignatureData{Algorithm: r.ServerSignature.Algorithm, Signature: own(r.ServerSignature.Signature)}
		}
		*resp = &r
	}
	if bytes.Equal(*cert, (*resp).ServerCertificate) && *cert != nil {
		*cert = (*resp).ServerCertificate
	} else {
		*cert = own(*cert)
	}
	*nonce = own(*nonce)
	return out
}

// own is a copy of b in an array of its own (nil stays nil).
func own(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// ownNodeID is a copy of id decoded from its own encoding: a GUID's last
// eight bytes and a ByteString id are slices of what they were decoded
// from. id itself if it does not encode back.
func ownNodeID(id *ua.NodeID) *ua.NodeID {
	if id == nil {
		return nil
	}
	b, err := id.Encode()
	if err != nil {
		return id
	}
	out := new(ua.NodeID)
	if _, err := out.Decode(own(b)); err != nil {
		return id
	}
	return out
}

// ownHeader is a copy of h without what could be a slice of a chunk: the
// additional header (an extension object of the server's; gopcua reads
// no part of it) decoded again from its own encoding, or dropped when it
// does not encode back.
func ownHeader(h *ua.ResponseHeader) *ua.ResponseHeader {
	if h == nil || h.AdditionalHeader == nil {
		return h
	}
	out := *h
	out.AdditionalHeader = nil
	if b, err := h.AdditionalHeader.Encode(); err == nil {
		eo := new(ua.ExtensionObject)
		if _, err := eo.Decode(own(b)); err == nil {
			out.AdditionalHeader = eo
		}
	}
	return &out
}
