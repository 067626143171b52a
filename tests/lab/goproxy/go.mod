module gomodtrace.lab/goproxy

go 1.19
