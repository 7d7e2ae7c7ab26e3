package otel

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// grpcBuffers is the buffer pool of connwatch's gRPC connections. gRPC's
// default pool clears every buffer it hands out, which cost about a tenth
// of the agent's CPU at full speed: the buffers hold marshalled export
// requests of up to a few MiB, and every byte of them is written (by
// proto.Marshal, or by a read of exactly their length) before it is read,
// so clearing protects nothing here.
var grpcBuffers mem.BufferPool = &tieredPool{}

// tieredPool keeps buffers in power-of-two size classes, without
// clearing them.
type tieredPool struct {
	classes [32]sync.Pool
}

const maxPooledClass = 24 // 16 MiB; larger buffers are not kept

func class(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

func (p *tieredPool) Get(length int) *[]byte {
	c := class(length)
	if c <= maxPooledClass {
		if bp, ok := p.classes[c].Get().(*[]byte); ok {
			*bp = (*bp)[:length]
			return bp
		}
		b := make([]byte, length, 1<<c)
		return &b
	}
	b := make([]byte, length)
	return &b
}

func (p *tieredPool) Put(bp *[]byte) {
	c := cap(*bp)
	if c == 0 || c&(c-1) != 0 || class(c) > maxPooledClass {
		return // not one of ours, or too large to keep
	}
	*bp = (*bp)[:0]
	p.classes[class(c)].Put(bp)
}

// protoCodec is gRPC's proto codec with its marshal buffers taken from
// grpcBuffers (the default codec takes them from gRPC's clearing pool).
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("proto codec: %T is not a proto.Message", v)
	}
	bp := grpcBuffers.Get(proto.Size(m))
	out, err := proto.MarshalOptions{}.MarshalAppend((*bp)[:0], m)
	if err != nil {
		grpcBuffers.Put(bp)
		return nil, err
	}
	*bp = out
	return mem.BufferSlice{mem.NewBuffer(bp, grpcBuffers)}, nil
}

func (protoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("proto codec: %T is not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(grpcBuffers)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
