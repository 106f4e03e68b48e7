package inputs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// maxRotationsFile bounds the on-call file, in bytes.
const maxRotationsFile = 1 << 20

// rotations are the schedules of an on-call file.
type rotations struct {
	schedules []schedule
}

type schedule struct {
	name   string
	start  time.Time
	shift  time.Duration
	order  []string // rotation members in turn
	shifts []window
}

type window struct {
	member     string
	start, end time.Time
}

type fileRotations struct {
	Schedules []fileSchedule `yaml:"schedules"`
}

type fileSchedule struct {
	Name     string `yaml:"name"`
	Rotation *struct {
		Start   time.Time     `yaml:"start"`
		Shift   time.Duration `yaml:"shift"`
		Members []string      `yaml:"members"`
	} `yaml:"rotation"`
	Shifts []struct {
		Member string    `yaml:"member"`
		Start  time.Time `yaml:"start"`
		End    time.Time `yaml:"end"`
	} `yaml:"shifts"`
}

func loadRotations(path string) (*rotations, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inputs: oncall: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRotationsFile+1))
	if err != nil {
		return nil, fmt.Errorf("inputs: oncall: read %s: %w", path, err)
	}
	if len(data) > maxRotationsFile {
		return nil, fmt.Errorf("inputs: oncall: %s: larger than %d bytes", path, maxRotationsFile)
	}
	r, err := parseRotations(data)
	if err != nil {
		return nil, fmt.Errorf("inputs: oncall: %s: %w", path, err)
	}
	return r, nil
}

// parseRotations parses an on-call file strictly (unknown keys are errors).
func parseRotations(data []byte) (*rotations, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fr fileRotations
	if err := dec.Decode(&fr); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file")
		}
		return nil, err
	}
	if len(fr.Schedules) == 0 {
		return nil, errors.New("schedules: none (list at least one)")
	}
	r := &rotations{}
	seen := make(map[string]bool)
	for i, fs := range fr.Schedules {
		where := fmt.Sprintf("schedules[%d]", i)
		switch {
		case !validName(fs.Name):
			return nil, fmt.Errorf("%s.name %q: must be 1 to 64 characters from [A-Za-z0-9._-]", where, fs.Name)
		case seen[fs.Name]:
			return nil, fmt.Errorf("%s.name %q: duplicates another schedule", where, fs.Name)
		case (fs.Rotation == nil) == (len(fs.Shifts) == 0):
			return nil, fmt.Errorf("%s (%s): give rotation or shifts, one of the two", where, fs.Name)
		}
		seen[fs.Name] = true
		s := schedule{name: fs.Name}
		if ro := fs.Rotation; ro != nil {
			switch {
			case ro.Start.IsZero():
				return nil, fmt.Errorf("%s.rotation.start: required (RFC 3339)", where)
			case ro.Shift < time.Minute:
				return nil, fmt.Errorf("%s.rotation.shift %s: must be at least 1m", where, ro.Shift)
			case len(ro.Members) == 0:
				return nil, fmt.Errorf("%s.rotation.members: none", where)
			}
			for j, m := range ro.Members {
				if _, err := spiffeid.FromString(m); err != nil {
					return nil, fmt.Errorf("%s.rotation.members[%d] %q: not a SPIFFE ID: %v", where, j, m, err)
				}
			}
			s.start, s.shift, s.order = ro.Start, ro.Shift, ro.Members
		}
		for j, w := range fs.Shifts {
			if _, err := spiffeid.FromString(w.Member); err != nil {
				return nil, fmt.Errorf("%s.shifts[%d].member %q: not a SPIFFE ID: %v", where, j, w.Member, err)
			}
			if w.Start.IsZero() || !w.End.After(w.Start) {
				return nil, fmt.Errorf("%s.shifts[%d]: start and end required, end after start", where, j)
			}
			s.shifts = append(s.shifts, window{member: w.Member, start: w.Start, end: w.End})
		}
		r.schedules = append(r.schedules, s)
	}
	return r, nil
}

// onCall returns whether member is on call at now, and for which schedules.
func (r *rotations) onCall(member string, now time.Time) (bool, []string) {
	var out []string
	for _, s := range r.schedules {
		if s.has(member, now) {
			out = append(out, s.name)
		}
	}
	return len(out) > 0, out
}

func (s *schedule) has(member string, now time.Time) bool {
	if len(s.order) > 0 && !now.Before(s.start) {
		turn := int(now.Sub(s.start) / s.shift % time.Duration(len(s.order)))
		if s.order[turn] == member {
			return true
		}
	}
	return slices.ContainsFunc(s.shifts, func(w window) bool {
		return w.member == member && !now.Before(w.start) && now.Before(w.end)
	})
}
