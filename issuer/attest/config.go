package attest

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// EntryConfig is a registration entry as written in jitd's configuration:
//
//	entries:
//	  - id: spiffe://example.org/backup
//	    selectors: ["unix:uid:1000", "unix:path:/usr/bin/backup"]
//	    ttl: 1h
//
// ParseEntries turns a list of them into Entries.
type EntryConfig struct {
	// ID is the SPIFFE ID, e.g. "spiffe://example.org/backup".
	ID string `yaml:"id"`
	// Selectors are selectors in text form, e.g. "unix:uid:1000"; a caller
	// must have all of them.
	Selectors []string `yaml:"selectors"`
	// TTL is the identity's lifetime as a Go duration, e.g. "1h".
	TTL string `yaml:"ttl"`
}

// ParseEntries parses and validates configured entries, keeping their
// order. The error lists every problem, naming the entry by index and the
// field, as in "entries[2].selectors[0]: ...".
func ParseEntries(cfgs []EntryConfig) (Entries, error) {
	var errs []error
	es := make(Entries, len(cfgs))
	for i, c := range cfgs {
		fail := func(field string, err error) { errs = append(errs, fieldError{field, err}.at(i)) }
		e := &es[i]
		var err error
		if c.ID == "" {
			fail("id", errors.New("missing SPIFFE ID"))
		} else if e.ID, err = spiffeid.FromString(c.ID); err != nil {
			fail("id", fmt.Errorf("%q: %w", c.ID, err))
		}
		for j, s := range c.Selectors {
			sel, err := parseSelector(s)
			if err != nil {
				fail("selectors["+strconv.Itoa(j)+"]", err)
				continue
			}
			e.Selectors = append(e.Selectors, sel)
		}
		if c.TTL == "" {
			fail("ttl", errors.New("missing TTL"))
		} else if e.TTL, err = time.ParseDuration(c.TTL); err != nil {
			fail("ttl", err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := ValidateEntries(es); err != nil {
		return nil, err
	}
	return es, nil
}
