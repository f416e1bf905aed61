module kmsgopeer

go 1.22

require github.com/cometbft/cometbft v0.38.26
