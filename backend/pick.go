package backend

import "slices"

// pick chooses the next member by p.Policy among the eligible members not
// in tried, or returns nil. p.mu must be held. It does not allocate.
func (p *Pool) pick(tried []*member) *member {
	switch p.Policy {
	case LeastConn:
		return p.pickLeastConn(tried)
	case Weighted:
		return p.pickWeighted(tried)
	}
	return p.pickRoundRobin(tried)
}

func usable(m *member, tried []*member) bool {
	return m.eligible() && !slices.Contains(tried, m)
}

// pickRoundRobin takes the first usable member from the cursor on and
// moves the cursor past it.
func (p *Pool) pickRoundRobin(tried []*member) *member {
	n := len(p.members)
	for i := range n {
		j := (p.next + i) % n
		if m := p.members[j]; usable(m, tried) {
			p.next = (j + 1) % n
			return m
		}
	}
	return nil
}

// pickLeastConn takes the usable member with the lowest active/weight,
// scanning from the round-robin cursor so that ties rotate.
func (p *Pool) pickLeastConn(tried []*member) *member {
	n := len(p.members)
	var best *member
	bestIdx := 0
	for i := range n {
		j := (p.next + i) % n
		m := p.members[j]
		if !usable(m, tried) {
			continue
		}
		// m.active/m.weight < best.active/best.weight, without division.
		if best == nil || m.active*best.weight < best.active*m.weight {
			best, bestIdx = m, j
		}
	}
	if best != nil {
		p.next = (bestIdx + 1) % n
	}
	return best
}

// pickWeighted is nginx's smooth weighted round robin: every usable member
// gains its weight, the one with the most current credit wins and pays the
// total back. Over a cycle each member is chosen in proportion to its
// weight, interleaved.
func (p *Pool) pickWeighted(tried []*member) *member {
	var best *member
	total := 0
	for _, m := range p.members {
		if !usable(m, tried) {
			continue
		}
		m.current += m.weight
		total += m.weight
		if best == nil || m.current > best.current {
			best = m
		}
	}
	if best != nil {
		best.current -= total
	}
	return best
}
