//go:build !linux

package nbd

import (
	"context"

	"github.com/lunboot/lunboot/pkg/blockdev"
)

func attach(context.Context, blockdev.Device, AttachOptions) (*Device, error) {
	return nil, ErrNotSupported
}

func disconnect(context.Context, int) error { return ErrNotSupported }

func status(context.Context, int) ([]DeviceStatus, error) { return nil, ErrNotSupported }

func syncBlockDevice(context.Context, string) error { return ErrNotSupported }

func dropPartitions(string) error { return ErrNotSupported }
