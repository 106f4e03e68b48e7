package notify

// CheckURL validates an endpoint URL as webhooks are checked (https, or
// http to a loopback address) and returns the form that may be logged
// (scheme and host only). Other signed HTTP clients of jitd (ticket
// checkers, on-call sources) use it too.
func CheckURL(raw string) (string, error) { return checkURL(raw) }

// ReadSecret reads an HMAC secret file as webhooks' are read: without its
// trailing newline, at least MinSecretLength bytes. The errors name the
// file but never show its contents.
func ReadSecret(path string) ([]byte, error) { return readSecret(path) }
