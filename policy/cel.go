package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
	"github.com/jitgrant/jitgrant/grant"
)

// newCELEnv declares the variables an auto_approve condition may use (see
// the package doc, "Auto-approve conditions").
func newCELEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("requester", cel.StringType),
		cel.Variable("requester_path", cel.StringType),
		cel.Variable("scopes", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
		cel.Variable("ttl", cel.DurationType),
		cel.Variable("reason", cel.StringType),
		cel.Variable("time", cel.TimestampType),
		cel.Variable("use_limit", cel.IntType),
		cel.Variable("ticket.id", cel.StringType),
		cel.Variable("ticket.exists", cel.BoolType),
		cel.Variable("ticket.open", cel.BoolType),
		cel.Variable("ticket.assignee", cel.StringType),
		cel.Variable("oncall.now", cel.BoolType),
		cel.Variable("oncall.schedules", cel.ListType(cel.StringType)),
		cel.ParserExpressionSizeLimit(maxExprLength),
		cel.ParserRecursionLimit(64),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	return env, nil
}

// compileCondition compiles a bool CEL expression into a program whose
// evaluations are capped at CELCostLimit.
func compileCondition(env *cel.Env, src string) (cel.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty condition (omit auto_approve to always ask for approval)")
	}
	if len(src) > maxExprLength {
		return nil, fmt.Errorf("%d bytes, more than %d", len(src), maxExprLength)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message))
		}
		return nil, fmt.Errorf("does not compile: %s", strings.Join(msgs, "; "))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be a bool expression, not %s", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(CELCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("does not compile: %w", err)
	}
	return prg, nil
}

// activation supplies a request's fields to a condition, converting each
// only when the condition reads it.
type activation struct {
	req *Request
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	r := a.req
	switch name {
	case "requester":
		return types.String(r.Requester.String()), true
	case "requester_path":
		return types.String(r.Requester.Path()), true
	case "scopes":
		vals := make([]scopeVal, len(r.Scopes))
		elems := make([]ref.Val, len(r.Scopes))
		for i := range r.Scopes {
			vals[i].s = &r.Scopes[i]
			elems[i] = &vals[i]
		}
		return types.NewRefValList(types.DefaultTypeAdapter, elems), true
	case "ttl":
		return types.Duration{Duration: r.TTL}, true
	case "reason":
		return types.String(r.Reason), true
	case "time":
		return types.Timestamp{Time: r.Time}, true
	case "use_limit":
		return types.Int(r.UseLimit), true
	case "ticket.id", "ticket.exists", "ticket.open", "ticket.assignee":
		var t Ticket
		if r.Ticket != nil && r.Ticket.Err == "" {
			t = *r.Ticket
		}
		switch name {
		case "ticket.id":
			return types.String(t.ID), true
		case "ticket.exists":
			return types.Bool(t.Exists), true
		case "ticket.open":
			return types.Bool(t.Open), true
		}
		return types.String(t.Assignee), true
	case "oncall.now":
		return types.Bool(r.OnCall != nil && r.OnCall.Err == "" && r.OnCall.Now), true
	case "oncall.schedules":
		var l []string
		if r.OnCall != nil && r.OnCall.Err == "" {
			l = r.OnCall.Schedules
		}
		return types.NewStringList(types.DefaultTypeAdapter, l), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// evalCondition runs prg against req. Anything but a plain true or false
// is an error.
func evalCondition(prg cel.Program, req *Request) (bool, error) {
	out, _, err := prg.Eval(&activation{req: req})
	if err != nil {
		return false, err
	}
	return celBool(out)
}

// celBool reads a condition's result: anything but a plain true or false is
// an error.
func celBool(out ref.Val) (bool, error) {
	switch out {
	case types.True:
		return true, nil
	case types.False:
		return false, nil
	}
	return false, fmt.Errorf("result %v is not a bool", out)
}

// scopeVal is a requested scope as a CEL map {"method": string,
// "resources": list(string)}. Field access, the common case, reads the
// scope directly; everything else goes through an equivalent standard map.
type scopeVal struct {
	s *grant.Scope
}

var _ traits.Mapper = (*scopeVal)(nil)

func (v *scopeVal) std() traits.Mapper {
	res := v.s.Resources
	if res == nil {
		res = []string{}
	}
	return types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{"method": v.s.Method, "resources": res})
}

// Find implements traits.Mapper.
func (v *scopeVal) Find(key ref.Val) (ref.Val, bool) {
	switch key {
	case types.String("method"):
		return types.String(v.s.Method), true
	case types.String("resources"):
		return types.NewStringList(types.DefaultTypeAdapter, v.s.Resources), true
	}
	return v.std().Find(key)
}

// Get implements traits.Indexer.
func (v *scopeVal) Get(key ref.Val) ref.Val {
	if val, ok := v.Find(key); ok {
		return val
	}
	return v.std().Get(key)
}

// Contains implements traits.Container.
func (v *scopeVal) Contains(key ref.Val) ref.Val { return v.std().Contains(key) }

// Size implements traits.Sizer.
func (v *scopeVal) Size() ref.Val { return types.Int(2) }

// Iterator implements traits.Iterable.
func (v *scopeVal) Iterator() traits.Iterator { return v.std().Iterator() }

// ConvertToNative implements ref.Val.
func (v *scopeVal) ConvertToNative(t reflect.Type) (any, error) { return v.std().ConvertToNative(t) }

// ConvertToType implements ref.Val.
func (v *scopeVal) ConvertToType(t ref.Type) ref.Val { return v.std().ConvertToType(t) }

// Equal implements ref.Val.
func (v *scopeVal) Equal(other ref.Val) ref.Val { return v.std().Equal(other) }

// Type implements ref.Val.
func (v *scopeVal) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (v *scopeVal) Value() any { return v.std().Value() }

// readsOnCall reports whether the condition src reads an oncall variable.
func readsOnCall(env *cel.Env, src string) bool {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return false
	}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if strings.HasPrefix(ref.Name, "oncall.") {
			return true
		}
	}
	return false
}
