package main

import (
	"github.com/mailedge/mailedge/sni"
)

// clientCAs returns the CA bundle of file for a listener's client-ca=,
// loaded once for all the listeners that name it.
func (g *gateway) clientCAs(file string) (*sni.CAPool, error) {
	if cas, ok := g.cas[file]; ok {
		return cas, nil
	}
	cas, err := sni.LoadCAPool(file)
	if err != nil {
		return nil, err
	}
	if g.cas == nil {
		g.cas = make(map[string]*sni.CAPool)
	}
	g.cas[file] = cas
	g.log.Info("client CAs loaded", "file", file, "certificates", cas.Len())
	return cas, nil
}

// reloadClientCAs reads the client CA bundles again: all of them when
// forced (SIGHUP), else those whose file changed (-watch). A bundle that
// fails to load keeps the one loaded before, and says why.
func (g *gateway) reloadClientCAs(force bool) {
	for file, cas := range g.cas {
		var err error
		changed := true
		if force {
			err = cas.Reload()
		} else {
			changed, err = cas.ReloadIfChanged()
		}
		switch {
		case err != nil:
			g.log.Error("client CAs reload failed; the previous ones stay in use", "file", file, "err", err)
		case changed:
			g.log.Info("client CAs reloaded", "file", file, "certificates", cas.Len())
		}
	}
}
