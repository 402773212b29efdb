package http

// WaitIdle is waitIdle, for the tests of package http_test.
var WaitIdle = waitIdle
