package audit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jparser is a small, strict JSON reader for export lines. Unlike
// encoding/json it rejects duplicate keys, invalid UTF-8 and lone
// surrogates instead of accepting them silently, and it is several times
// faster on entry lines, which dominate verification time.
type jparser struct {
	b        []byte
	i        int
	interned map[string]string // optional, see istr
}

var errSyntax = errors.New("malformed JSON")

func (p *jparser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jparser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *jparser) expect(c byte) error {
	if p.peek() != c {
		return fmt.Errorf("%w: want %q at offset %d", errSyntax, c, p.i)
	}
	p.i++
	return nil
}

// end checks that nothing but white space follows.
func (p *jparser) end() error {
	if p.ws(); p.i != len(p.b) {
		return fmt.Errorf("%w: trailing data at offset %d", errSyntax, p.i)
	}
	return nil
}

// str reads a JSON string.
func (p *jparser) str() (string, error) {
	b, esc, err := p.strBytes()
	if err != nil || esc {
		return string(b), err
	}
	return string(b), nil
}

// istr reads a JSON string that is likely to repeat (actors, actions,
// detail keys) and returns a shared copy from p.interned.
func (p *jparser) istr() (string, error) {
	b, _, err := p.strBytes()
	if err != nil {
		return "", err
	}
	if s, ok := p.interned[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	if p.interned != nil && len(p.interned) < 4096 && len(s) <= 256 {
		p.interned[s] = s
	}
	return s, nil
}

// strBytes reads a JSON string and returns its contents, aliasing the input
// when it has no escapes (esc false) or in a new slice when it has.
func (p *jparser) strBytes() (b []byte, esc bool, err error) {
	if p.peek() != '"' {
		return nil, false, fmt.Errorf("%w: want a string at offset %d", errSyntax, p.i)
	}
	p.i++
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false, fmt.Errorf("%w: invalid UTF-8 in string", errSyntax)
			}
			return s, false, nil
		case c == '\\':
			b, err := p.strSlow(start)
			return b, true, err
		case c < 0x20:
			return nil, false, fmt.Errorf("%w: control character in string", errSyntax)
		case c >= 0x80:
			ascii = false
		}
		p.i++
	}
	return nil, false, fmt.Errorf("%w: unterminated string", errSyntax)
}

// strSlow finishes a string that has escapes; start is after the quote.
func (p *jparser) strSlow(start int) ([]byte, error) {
	out := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(out) {
				return nil, fmt.Errorf("%w: invalid UTF-8 in string", errSyntax)
			}
			return out, nil
		case c < 0x20:
			return nil, fmt.Errorf("%w: control character in string", errSyntax)
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			break
		}
		esc := p.b[p.i+1]
		p.i += 2
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, fmt.Errorf("%w: bad \\u escape", errSyntax)
			}
			if utf16.IsSurrogate(r) {
				if p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
					return nil, fmt.Errorf("%w: lone surrogate in string", errSyntax)
				}
				p.i += 2
				r2, ok := p.hex4()
				if r = utf16.DecodeRune(r, r2); !ok || r == utf8.RuneError {
					return nil, fmt.Errorf("%w: bad surrogate pair in string", errSyntax)
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, fmt.Errorf("%w: bad escape \\%c", errSyntax, esc)
		}
	}
	return nil, fmt.Errorf("%w: unterminated string", errSyntax)
}

func (p *jparser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}

// uint reads a non-negative JSON integer below 2^63, without sign, fraction,
// exponent or leading zeros.
func (p *jparser) uint() (uint64, error) {
	p.ws()
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	digits := p.b[start:p.i]
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' ||
		p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, fmt.Errorf("%w: want a non-negative integer at offset %d", errSyntax, start)
	}
	v, err := strconv.ParseUint(string(digits), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%w: integer out of range at offset %d", errSyntax, start)
	}
	return v, nil
}

// hash reads a hash: a string holding 32 bytes in standard base64.
func (p *jparser) hash() (Hash, error) {
	s, _, err := p.strBytes()
	if err != nil {
		return Hash{}, err
	}
	var buf [33]byte // 44 base64 characters decode to at most 33 bytes
	if len(s) != 44 {
		return Hash{}, fmt.Errorf("%w: want a base64 SHA-256 hash", errSyntax)
	}
	n, err := base64.StdEncoding.Strict().Decode(buf[:], s)
	if err != nil || n != HashSize {
		return Hash{}, fmt.Errorf("%w: want a base64 SHA-256 hash", errSyntax)
	}
	return Hash(buf[:HashSize]), nil
}

// object reads a JSON object, calling member for each key with the parser
// positioned at the value; member must consume the value. Duplicate keys are
// an error.
func (p *jparser) object(member func(key string) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	if p.peek() == '}' {
		p.i++
		return nil
	}
	var seenBuf [8]string
	seen := seenBuf[:0]
	for {
		k, err := p.istr()
		if err != nil {
			return err
		}
		for _, s := range seen {
			if s == k {
				return fmt.Errorf("duplicate field %q", truncate(k, 40))
			}
		}
		seen = append(seen, k)
		if err := p.expect(':'); err != nil {
			return err
		}
		if err := member(k); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return fmt.Errorf("%w: want ',' or '}' at offset %d", errSyntax, p.i)
		}
	}
}

// hashes reads a JSON array of hashes (at most max).
func (p *jparser) hashes(max int) ([]Hash, error) {
	if err := p.expect('['); err != nil {
		return nil, err
	}
	out := []Hash{}
	if p.peek() == ']' {
		p.i++
		return out, nil
	}
	for {
		if len(out) == max {
			return nil, fmt.Errorf("more than %d hashes", max)
		}
		h, err := p.hash()
		if err != nil {
			return nil, err
		}
		out = append(out, h)
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return out, nil
		default:
			return nil, fmt.Errorf("%w: want ',' or ']' at offset %d", errSyntax, p.i)
		}
	}
}
