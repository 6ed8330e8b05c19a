"""Network boot from the exporter: a TFTP server (what U-Boot's `tftpboot` and PXE fetch) and an HTTP
server, each serving a root that the lease's client fills (`put`) and that is emptied when the lease ends."""
