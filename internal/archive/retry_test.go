package archive_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgtrail/pgtrail/internal/archive"
)

// s3Error builds an error shaped like the SDK's for an HTTP status and S3 error code.
func s3Error(status int, code string) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	var err error = &smithy.GenericAPIError{Code: code, Message: code}
	err = &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: resp, Err: err}}
	return fmt.Errorf("put events/x: %w", &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: err})
}

func TestIsRetryable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"Nil", nil, false},
		{"ConnectionRefused", fmt.Errorf("put x: %w", refused), true},
		{"RetriesExhausted", &retry.MaxAttemptsError{Attempt: 3, Err: refused}, true},
		{"RetryQuotaExceeded", errors.Join(refused, ratelimit.QuotaExceededError{}), true},
		{"ConnectionReset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"BodyCutShort", fmt.Errorf("get x: read body: %w", io.ErrUnexpectedEOF), true},
		{"DeadlineExceeded", fmt.Errorf("put x: %w", context.DeadlineExceeded), true},
		{"DiskFull", &fs.PathError{Op: "write", Path: "/a", Err: syscall.ENOSPC}, true},
		{"InternalError", s3Error(500, "InternalError"), true},
		{"ServiceUnavailable", s3Error(503, "ServiceUnavailable"), true},
		{"SlowDown", s3Error(503, "SlowDown"), true},
		{"TooManyRequests", s3Error(429, "TooManyRequests"), true},
		{"RequestTimeout", s3Error(400, "RequestTimeout"), true},
		{"Canceled", fmt.Errorf("put x: %w", context.Canceled), false},
		{"AccessDenied", s3Error(403, "AccessDenied"), false},
		{"InvalidAccessKeyId", s3Error(403, "InvalidAccessKeyId"), false},
		{"SignatureDoesNotMatch", s3Error(403, "SignatureDoesNotMatch"), false},
		{"NoSuchBucket", s3Error(404, "NoSuchBucket"), false},
		{"BadRequest", s3Error(400, "InvalidRequest"), false},
		{"BadDigest", s3Error(400, "BadDigest"), false},
		{"NotImplemented", s3Error(501, "NotImplemented"), false},
		{"NotFound", fmt.Errorf("get x: %w", archive.ErrNotFound), false},
		{"PermissionDenied", &fs.PathError{Op: "open", Path: "/a", Err: syscall.EACCES}, false},
		{"NotADirectory", &fs.PathError{Op: "open", Path: "/a", Err: syscall.ENOTDIR}, false},
		{"BadBatch", fmt.Errorf("write batch: %w", archive.ErrBadBatch), false},
		{"Plain", errors.New("something"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := archive.IsRetryable(tt.err); got != tt.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
