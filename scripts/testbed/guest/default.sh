# Used when a boot ships no script: lease an address and ping the router.
tb_dhcp || exit 1
tb_ping "$TB_ROUTER" 2 || exit 2
exit 0
