package odootest

// refusal is a scripted business refusal of a model method, as a custom
// constraint or an automated action in a real database would raise.
type refusal struct {
	model, method   string
	n               int
	exception, text string
}

// RefuseNext makes the next n calls of model.method fail with the given
// Odoo exception (e.g. "odoo.exceptions.UserError") and message, after
// nothing was written. Calls of other methods are unaffected.
func (s *Server) RefuseNext(model, method string, n int, exception, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals = append(s.refusals, refusal{model: model, method: method, n: n, exception: exception, text: message})
}

// takeRefusal returns the scripted refusal for model.method, if any (under mu).
func (s *Server) takeRefusal(model, method string) *odooError {
	for i := range s.refusals {
		r := &s.refusals[i]
		if r.model == model && r.method == method && r.n > 0 {
			r.n--
			return &odooError{r.exception, r.text}
		}
	}
	return nil
}

// methodFault is a fault injected into the next calls of one model method.
type methodFault struct {
	model, method string
	n             int
	fault         Fault
}

// FailNextCall makes the next n calls of model.method fail with f (e.g.
// FaultCommitThenDrop on "mrp.workorder" "write": the write is applied, the
// answer never arrives), leaving every other call alone.
func (s *Server) FailNextCall(model, method string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mfaults = append(s.mfaults, methodFault{model: model, method: method, n: n, fault: f})
}

// ClearCallFaults drops the faults FailNextCall scripted and not yet used.
func (s *Server) ClearCallFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mfaults = nil
}

// takeMethodFault returns the fault scripted for model.method, if any (under mu).
func (s *Server) takeMethodFault(model, method string) (Fault, bool) {
	for i := range s.mfaults {
		mf := &s.mfaults[i]
		if mf.model == model && mf.method == method && mf.n > 0 {
			mf.n--
			return mf.fault, true
		}
	}
	return FaultNone, false
}

// OnDrop sets a function run after a commit-then-drop call has committed
// and before its connection is dropped, while the client still waits for
// the answer: a test changes Odoo there ("the work order was finished
// meanwhile") at exactly the worst moment. nil removes it.
func (s *Server) OnDrop(fn func(model, method string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onDrop = fn
}

// BeforeCall sets a function run before every object call is served (JSON-RPC
// and JSON-2), outside the emulator's lock, so it may use the Server's
// methods: a test changes Odoo between the agent's lookup and its write
// ("the operator finished the work order just then"). nil removes it.
func (s *Server) BeforeCall(fn func(model, method string)) {
	if fn == nil {
		s.beforeCall.Store(nil)
		return
	}
	s.beforeCall.Store(&fn)
}
