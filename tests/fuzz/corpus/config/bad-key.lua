return { sandbox = { memry_limit = 1 }, [1] = true }
