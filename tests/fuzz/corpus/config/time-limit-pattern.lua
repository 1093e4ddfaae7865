local s = ("a"):rep(28)
return { device_id = s:match(("a?"):rep(28) .. s) }
