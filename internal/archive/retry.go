package archive

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// permanentCodes are S3 error codes that no retry fixes: the operator must.
var permanentCodes = map[string]bool{
	"AccessDenied": true, "AllAccessDisabled": true, "AccountProblem": true,
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "InvalidToken": true, "ExpiredToken": true,
	"InvalidSecurity": true, "NoSuchBucket": true, "InvalidBucketName": true, "InvalidRequest": true,
	"InvalidArgument": true, "BadDigest": true, "InvalidDigest": true, "MalformedXML": true,
	"KMS.DisabledException": true, "KMS.NotFoundException": true, "KMS.KMSInvalidStateException": true,
	"AuthorizationHeaderMalformed": true, "PermanentRedirect": true, "MethodNotAllowed": true,
	"NotImplemented": true, "InvalidObjectState": true, "EntityTooLarge": true,
}

// IsRetryable reports whether err, from a Sink, may go away by itself: the storage is unreachable,
// overloaded or slow (network errors, timeouts, HTTP 5xx and 429, throttling). It is false for
// errors an operator must fix — bad credentials, access denied, missing bucket, bad request — and
// for a canceled context, so that a daemon retries outages with backoff but stops at once with a
// clear message on those.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || isTLSConfigError(err) {
		return false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		if permanentCodes[code] {
			return false
		}
		if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
			return true
		}
		if _, ok := retry.DefaultRetryableErrorCodes[code]; ok {
			return true
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() >= 400 {
		c := status.HTTPStatusCode()
		return c >= 500 && c != http.StatusNotImplemented || c == http.StatusTooManyRequests || c == http.StatusRequestTimeout
	}
	var quota ratelimit.QuotaExceededError
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &quota) {
		return true
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.EAGAIN, syscall.EINTR, syscall.EIO, syscall.ENOSPC, syscall.EDQUOT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	// Not net.Error: syscall.Errno implements it, and most errnos are not transient.
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isTLSConfigError reports certificate errors: a wrong endpoint or CA, which retries cannot fix.
func isTLSConfigError(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify)
}
