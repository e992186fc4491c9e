const axios = require('axios');
// 定义请求头部
const headers = {
'authorization': 'esp_ai平台的32位open_api_key',
'Content-Type': 'application/json'
};
// 定义要发送的数据
const data = [{"id": "b93ec353967441ada8d31b4910a3032d"}];
// 发送POST请求
axios.post('https://api.espai.fun/devices/del', data, {headers})
.then(response => {
console.log(response.data);
})
.catch(error => {
console.error(error);
});
