package kit

// maxPooled bounds the contexts a ContextPool keeps after a burst of
// concurrent streams.
const maxPooled = 64

// ContextPool keeps the HTTP contexts of deleted streams for reuse, so a
// plugin allocates no context per stream: NewHttpContext takes one with
// Get (nil: allocate one), and the plugin's RecycleHttpContext (see
// proxywasm.HttpContextRecycler) resets it and gives it back with Put.
type ContextPool[T any] struct{ free []*T }

// Get returns a kept context, or nil when there is none.
func (c *ContextPool[T]) Get() *T {
	n := len(c.free)
	if n == 0 {
		return nil
	}
	x := c.free[n-1]
	c.free[n-1] = nil
	c.free = c.free[:n-1]
	return x
}

// Put keeps x, already reset, for a later Get (up to a bound).
func (c *ContextPool[T]) Put(x *T) {
	if len(c.free) < maxPooled {
		c.free = append(c.free, x)
	}
}
