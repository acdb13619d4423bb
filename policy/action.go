package policy

import "github.com/picket-proxy/picket/internal/enum"

// Action is what happens to a request or a tunnel.
type Action uint8

// The actions, least severe first: when two stages disagree the more severe
// action wins.
const (
	// Allow forwards the request (or opens the tunnel).
	Allow Action = iota
	// Warn shows a warning page with a "continue" button; the proxy turns it
	// into Allow for a client that has continued.
	Warn
	// Block answers with a block page (or 403 to a CONNECT).
	Block
)

var actionNames = [...]string{"allow", "warn", "block"}

func (a Action) String() string { return enum.Name("Action", actionNames[:], a) }

// ParseAction is the inverse of Action.String.
func ParseAction(s string) (Action, error) { return enum.Parse("action", actionNames[:], Allow, s) }

// MarshalText writes the action's name.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Stage is the stage of evaluation that decided.
type Stage uint8

// The stages, in evaluation order. StageNone means no stage decided: the
// request passed every stage without a match and with no verdict to act on.
const (
	StageNone Stage = iota
	// StageBypass rules exempt traffic from interception, lookup and scanning.
	StageBypass
	// StageAccess rules allow, warn or block by who asks for what, when.
	StageAccess
	// StageProtection acts on the reputation verdict: rules first, then the
	// per-kind table (Config.Protection).
	StageProtection
)

var stageNames = [...]string{"none", "bypass", "access", "protection"}

func (s Stage) String() string { return enum.Name("Stage", stageNames[:], s) }

// ParseStage is the inverse of Stage.String for the three rule stages.
func ParseStage(s string) (Stage, error) { return enum.Parse("stage", stageNames[:], StageBypass, s) }

// MarshalText writes the stage's name.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
