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
