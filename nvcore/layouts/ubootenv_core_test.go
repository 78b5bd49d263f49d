package layouts

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// cutProvider is a provider whose power fails after budget bytes have been
// written: the write that crosses the budget lands its first bytes only.
type cutProvider struct {
	*nvcoretest.Memory
	budget int
}

var errPowerCut = errors.New("power cut")

func (p *cutProvider) WriteAt(b []byte, off int64) (int, error) {
	if p.budget <= 0 {
		return 0, errPowerCut
	}
	n := min(len(b), p.budget)
	p.budget -= n
	if _, err := p.Memory.WriteAt(b[:n], off); err != nil {
		return 0, err
	}
	if n < len(b) {
		return n, errPowerCut
	}
	return n, nil
}

func envVars(e *Env) []string {
	var list []string
	for _, v := range e.Vars {
		list = append(list, v.Name+"="+v.Value)
	}
	slices.Sort(list)
	return list
}

// TestEnvPowerCutThroughCore: an env set through a registered device whose
// provider stops accepting writes after byte N, for every N across the
// save: after each cut, a fresh device over the same bytes loads the old
// environment or the new one, never neither, never a mix, and the cells the
// layout finds agree.
func TestEnvPowerCutThroughCore(t *testing.T) {
	for _, flags := range []EnvFlags{EnvFlagsCounter, EnvFlagsBoolean} {
		t.Run(flags.String(), func(t *testing.T) {
			cfg := EnvConfig{Size: 512, Redundant: true, Flags: flags}
			// Three generations in, so both copies hold environments.
			base := &envMem{envFill(1024, 0xff)}
			e, _ := LoadEnv(base, 1024, cfg)
			e.Set("serial#", "SN-0042")
			e.Set("ethaddr", "00:11:22:33:44:55")
			for g := range 3 {
				e.Set("gen", fmt.Sprint(g))
				if err := e.Save(base, true); err != nil {
					t.Fatal(err)
				}
			}
			old := envVars(e)
			e.Set("bootcmd", "run distro_bootcmd")
			e.Unset("gen")
			want := envVars(e)

			for n := 0; ; n++ {
				p := &cutProvider{Memory: nvcoretest.NewMemory(base.b), budget: n}
				reg := nvcore.NewRegistry()
				d, err := reg.Register(nvcore.Config{Name: "env", Layout: UBootEnv{Config: cfg}}, p)
				if err != nil {
					t.Fatal(err)
				}
				env, err := LoadEnv(d, d.Size(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				env.Set("bootcmd", "run distro_bootcmd")
				env.Unset("gen")
				saveErr := env.Save(d, false)
				reg.Remove(d)

				// Power back: a new device over what reached the memory.
				again := nvcore.NewRegistry()
				d2, err := again.Register(nvcore.Config{Name: "env", Layout: UBootEnv{Config: cfg}}, nvcoretest.NewMemory(p.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				got, err := LoadEnv(d2, d2.Size(), cfg)
				if err != nil {
					t.Fatalf("cut after %d bytes: the environment does not load: %v", n, err)
				}
				vars := envVars(got)
				if !slices.Equal(vars, old) && !slices.Equal(vars, want) {
					t.Fatalf("cut after %d bytes: loaded %q, neither old %q nor new %q", n, vars, old, want)
				}
				if d2.LayoutError() != nil || len(d2.Cells()) != len(vars) {
					t.Fatalf("cut after %d bytes: %d cells (%v) for %d variables", n, len(d2.Cells()), d2.LayoutError(), len(vars))
				}
				again.Remove(d2)
				if saveErr == nil {
					if !slices.Equal(vars, want) {
						t.Fatalf("save succeeded with %d bytes but loads %q", n, vars)
					}
					if n < 3 {
						t.Fatalf("a save that changes a variable wrote only %d bytes", n)
					}
					t.Logf("%d cut points, every one old or new", n+1)
					break
				}
				if !errors.Is(saveErr, errPowerCut) {
					t.Fatalf("cut after %d bytes: save failed with %v, want the power cut", n, saveErr)
				}
			}
		})
	}
}
