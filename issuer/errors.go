package issuer

import "errors"

// Errors the issuer's operations return, wrapped with detail; the gRPC
// service maps each to its status code (see service.go) and the message a
// client sees is the wrapped error's text.
var (
	// ErrNotFound: no request with that ID.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the input breaks a rule; the text names the field.
	ErrInvalid = errors.New("invalid argument")
	// ErrPermission: the caller may not do this; the text names the missing
	// permission.
	ErrPermission = errors.New("permission denied")
	// ErrState: the request is not in a state that allows this.
	ErrState = errors.New("failed precondition")
	// ErrUnavailable: the issuer is shutting down.
	ErrUnavailable = errors.New("unavailable")
	// ErrConflict: another change to the same request committed first. The
	// issuer retries; callers see it only if retries run out.
	ErrConflict = errors.New("conflict")
)
